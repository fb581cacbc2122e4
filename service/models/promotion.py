"""The rules for moving `@champion`: a version takes it only when its robust accuracy beats the
current holder's at the same threat model and its clean accuracy drops by at most a margin."""

from __future__ import annotations

from dataclasses import dataclass

from service.models.figures import Figures


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    promoted: bool
    reason: str
    figures: dict[str, float]  # what was compared: candidate_* and champion_* figures


def decide(
    *, version: str, candidate: Figures | None, holder: str | None, champion: Figures | None, max_clean_drop: float
) -> Decision:
    """`holder`: the version holding the alias now (None: nobody), with its figures `champion`."""
    if candidate is None:
        return Decision(promoted=False, reason=f"version {version} has not been evaluated yet", figures={})
    figures = {f"candidate_{key}": value for key, value in candidate.compared().items()}
    if holder is None:
        return Decision(promoted=True, reason=f"version {version} is the first champion", figures=figures)
    if holder == version:
        return Decision(promoted=False, reason=f"version {version} already holds the alias", figures=figures)
    if champion is None:  # the holder was never evaluated: any evaluated version beats it
        return Decision(
            promoted=True, reason=f"version {version} replaces version {holder}, which has no figures", figures=figures
        )
    figures |= {f"champion_{key}": value for key, value in champion.compared().items()}
    if not candidate.same_threat_model(champion):
        return Decision(
            promoted=False,
            reason=f"different threat model: version {version} was evaluated at {candidate.threat_model}, "
            f"the champion (version {holder}) at {champion.threat_model}",
            figures=figures,
        )
    if candidate.robust_acc <= champion.robust_acc:
        return Decision(
            promoted=False,
            reason=f"robust accuracy not better: {candidate.robust_acc:.4f} against the champion's "
            f"{champion.robust_acc:.4f} (version {holder})",
            figures=figures,
        )
    drop = champion.clean_acc - candidate.clean_acc
    if drop > max_clean_drop + 1e-9:  # accuracies are ratios of counts: no float noise decides
        return Decision(
            promoted=False,
            reason=f"clean accuracy drops by {drop:.4f} ({champion.clean_acc:.4f} to {candidate.clean_acc:.4f}), "
            f"more than the allowed {max_clean_drop:.4f}",
            figures=figures,
        )
    return Decision(
        promoted=True,
        reason=f"robust accuracy {candidate.robust_acc:.4f} beats {champion.robust_acc:.4f} (version {holder}) "
        f"with a clean-accuracy drop of {max(drop, 0.0):.4f}",
        figures=figures,
    )
