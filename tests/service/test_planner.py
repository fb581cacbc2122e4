"""The queue planner on hand-built queues: fair share between users, priority and aging, limits,
gangs that must fit whole, infeasible jobs that block nobody, reservations against starvation,
and start estimates that are honest about what they do not know."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import hypothesis
from hypothesis import strategies as st

from service.scheduling.model import Explanation, Policy, QueueLimits, Reason, Request, Running, Waiting
from service.scheduling.planner import Capacity, Usage, plan

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CPU1 = Request({"CPU": 1.0})
GPU1 = Request({"GPU": 1.0, "CPU": 1.0})


def waiting(job_id, *, owner="a", queue="default", priority=0, age_s=0.0, request=CPU1, **extra):
    return Waiting(
        id=job_id,
        owner=owner,
        queue=queue,
        priority=priority,
        created_at=NOW - timedelta(seconds=age_s),
        request=request,
        **extra,
    )


def running(job_id, *, owner="a", queue="default", request=CPU1, eta_s=None, ran_s=60.0):
    return Running(
        id=job_id, owner=owner, queue=queue, request=request, started_at=NOW - timedelta(seconds=ran_s), eta_s=eta_s
    )


def nodes(*cpus_gpus, used=()):
    total = [{"CPU": float(c), "GPU": float(g)} for c, g in cpus_gpus]
    free = [dict(node) for node in total]
    for index, key, amount in used:
        free[index][key] -= amount
    return Capacity(free=free, total=total)


def run(jobs, cluster, *, active=(), queues=None, usage=None, policy=None):
    return plan(
        list(jobs), list(active), cluster, queues=queues or {}, usage=usage or {}, now=NOW, policy=policy or Policy()
    )


def test_a_second_user_is_served_second_not_after_the_first_users_whole_batch():
    a_jobs = [waiting(f"a{i}", owner="a", age_s=100 - i) for i in range(10)]
    b_job = waiting("b0", owner="b", age_s=50)  # submitted after all of a's
    result = run([*a_jobs, b_job], nodes((2, 0)))
    assert result.claims == ["a0", "b0"]
    assert result.explanations["a1"].position == 3


def test_past_usage_decays_and_orders_users():
    usage = {("default", "a"): Usage(value=1000.0, at=NOW - timedelta(hours=1))}
    result = run([waiting("a0", owner="a", age_s=10), waiting("b0", owner="b")], nodes((1, 0)), usage=usage)
    assert result.claims == ["b0"]
    forgotten = {("default", "a"): Usage(value=1000.0, at=NOW - timedelta(days=30))}
    result = run(
        [waiting("a0", owner="a", age_s=10), waiting("b0", owner="b")],
        nodes((1, 0)),
        usage=forgotten,
        policy=Policy(half_life_s=3600),
    )
    assert result.claims == ["a0"]  # 720 half-lives later it is gone; age decides


def test_priority_comes_first_and_aging_lifts_old_jobs():
    result = run([waiting("low", age_s=100), waiting("high", priority=5)], nodes((1, 0)))
    assert result.claims == ["high"]
    assert result.explanations["low"].reason == Reason.RESOURCES
    old = waiting("old", age_s=6 * 3600)  # six aging steps
    assert run([old, waiting("high", priority=5)], nodes((1, 0))).claims == ["old"]


def test_an_infeasible_job_blocks_nobody_and_says_so():
    big = [waiting(f"big{i}", request=Request({"GPU": 8.0}), age_s=1000) for i in range(2000)]
    small = waiting("small", owner="b")
    result = run([*big, small], nodes((2, 1)))
    assert result.claims == ["small"]
    assert result.explanations["big7"] == Explanation(None, Reason.INFEASIBLE, None)


def test_a_gang_starts_whole_or_not_at_all():
    two_workers = Request({"GPU": 1.0}, workers=2)
    assert run([waiting("gang", request=two_workers)], nodes((4, 1), (4, 1))).claims == ["gang"]
    result = run([waiting("gang", request=two_workers)], nodes((4, 1), (4, 1), used=[(1, "GPU", 1.0)]))
    assert result.claims == []
    assert result.explanations["gang"].reason == Reason.RESOURCES
    assert run([waiting("gang", request=Request({"GPU": 2.0}))], nodes((4, 1), (4, 1))).explanations["gang"].reason == (
        Reason.INFEASIBLE
    )  # two GPUs on one node: no node has them


def test_user_and_queue_limits():
    limits = {"gpu": QueueLimits(name="gpu", max_gpus=3, user_max_gpus=1)}
    jobs = [
        waiting("a1", owner="a", queue="gpu", request=GPU1, age_s=30),
        waiting("a2", owner="a", queue="gpu", request=GPU1, age_s=20),
        waiting("b1", owner="b", queue="gpu", request=GPU1, age_s=10),
        waiting("c1", owner="c", queue="gpu", request=GPU1, age_s=5),
        waiting("d1", owner="d", queue="gpu", request=GPU1),
    ]
    result = run(jobs, nodes((16, 8)), queues=limits)
    assert result.claims == ["a1", "b1", "c1"]
    assert result.explanations["a2"].reason == Reason.USER_LIMIT
    assert result.explanations["d1"].reason == Reason.QUEUE_LIMIT
    too_big = run([waiting("x", queue="gpu", request=Request({"GPU": 2.0}))], nodes((16, 8)), queues=limits)
    assert too_big.explanations["x"].reason == Reason.INFEASIBLE


def test_held_and_dependent_jobs_wait_with_their_reason():
    result = run([waiting("h", held=True), waiting("d", blocked_by="parent")], nodes((4, 0)))
    assert result.claims == []
    assert result.explanations["h"] == Explanation(None, Reason.HELD, None)
    assert result.explanations["d"] == Explanation(None, Reason.DEPENDENCY, None)


def test_small_jobs_run_around_a_waiting_large_one_until_it_has_waited_too_long():
    large = Request({"CPU": 4.0})
    cluster = nodes((4, 0), used=[(0, "CPU", 2.0)])
    fresh = run([waiting("large", request=large, age_s=60), waiting("small", age_s=10)], cluster)
    assert fresh.claims == ["small"]
    assert fresh.explanations["large"].reason == Reason.RESOURCES
    starving = run([waiting("large", request=large, age_s=7200), waiting("small", age_s=10)], cluster)
    assert starving.claims == []
    assert starving.explanations["small"].reason == Reason.PRIORITY


def test_start_estimates_come_from_running_jobs_etas_or_are_unknown():
    cluster = nodes((2, 0), used=[(0, "CPU", 2.0)])
    active = [running("r1", eta_s=100), running("r2", eta_s=300)]
    result = run([waiting("w1", age_s=20), waiting("w2", age_s=10), waiting("w3")], cluster, active=active)
    assert result.explanations["w1"].estimated_start == NOW + timedelta(seconds=100)
    assert result.explanations["w2"].estimated_start == NOW + timedelta(seconds=300)
    assert result.explanations["w3"].estimated_start is None  # needs w1 or w2 to end: durations unknown
    unknown = run([waiting("w1")], cluster, active=[running("r1", eta_s=None), running("r2", eta_s=None)])
    assert unknown.explanations["w1"].estimated_start is None
    beyond = run([waiting("w1")], cluster, active=[running("r1", eta_s=1e12), running("r2", eta_s=1e300)])
    assert beyond.explanations["w1"].estimated_start is None  # a year on says nothing (and 1e12 s overflowed)


def test_positions_are_one_order_across_queues():
    jobs = [waiting("q1", queue="one", age_s=30), waiting("q2", queue="two", age_s=20), waiting("q3", queue="one")]
    busy = nodes((1, 0), used=[(0, "CPU", 1.0)])
    result = run(jobs, busy)
    assert [result.explanations[j].position for j in ("q1", "q2", "q3")] == [1, 2, 3]
    assert [result.explanations[j].reason for j in ("q1", "q2", "q3")] == [
        Reason.RESOURCES,
        Reason.PRIORITY,
        Reason.PRIORITY,
    ]


SHAPES = (CPU1, GPU1, Request({"CPU": 2.0}), Request({"GPU": 1.0, "CPU": 1.0}, workers=2))


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    jobs=st.lists(
        st.tuples(
            st.sampled_from("abc"),  # owner
            st.sampled_from(("default", "capped")),  # queue
            st.integers(0, 2),  # priority
            st.floats(0, 7200),  # age
            st.integers(0, len(SHAPES) - 1),
            st.booleans(),  # held
        ),
        max_size=25,
    ),
    free=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), min_size=1, max_size=3),
    capped=st.none() | st.integers(0, 3),
)
def test_the_dispatchers_short_plan_claims_exactly_what_the_whole_plan_claims(jobs, free, capped):
    """Without explanations the plan stops once no claim is left: it must claim the same jobs."""
    queue = [
        waiting(f"j{i}", owner=o, queue=q, priority=p, age_s=age, request=SHAPES[shape], held=held)
        for i, (o, q, p, age, shape, held) in enumerate(jobs)
    ]
    cluster = Capacity(
        free=[{"CPU": float(c), "GPU": float(g)} for c, g in free], total=[{"CPU": 4.0, "GPU": 2.0} for _ in free]
    )
    queues = {"capped": QueueLimits(name="capped", user_max_cpus=capped)}
    policy = Policy(reserve_after_s=3600)
    whole = plan(queue, [], cluster, queues=queues, usage={}, now=NOW, policy=policy)
    short = plan(queue, [], cluster, queues=queues, usage={}, now=NOW, policy=policy, explain=False)
    assert short.claims == whole.claims
