"""The app every end-to-end conformance test runs on: one per broker, its schema created.

``producer`` sends as either kind of caller does: ``await task.asend()`` on the test's
loop, or ``task.send()`` from a thread (a web request's), which takes the broker's
synchronous path where it has one (``SyncProducing``) and the app's loop thread where not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, ParamSpec, TypeVar

import pytest

from pigeon import App, JobHandle, Task, UnsupportedFeature
from tests.conftest import delete_rabbitmq_queues, open_broker

P = ParamSpec("P")
R = TypeVar("R")


@pytest.fixture
async def app(broker_url: str) -> AsyncIterator[App]:
    migrated = await open_broker(broker_url, {})  # creates the schema where a broker needs migrating
    await migrated.__aexit__(None, None, None)
    app = App(broker_url)
    yield app
    await app.aclose()
    await asyncio.to_thread(app.close)  # what synchronous calls opened on the app's own loop
    await delete_rabbitmq_queues(broker_url, app.client._seams)


# -- RabbitMQ alone ("amqp"): what needs a record of every job is a clear error ------------------
#
# RabbitMQ alone keeps no record of a job, so a test that looks one up, lists, cancels by id,
# keeps a unique key, limits concurrency or reports progress must meet UnsupportedFeature (the
# broker's own, naming the store, or the seam's for an optional protocol it lacks) and nothing
# else. A test whose contract is a record's (a lease that expires and is recovered, a claim that
# sees the whole queue at once) is skipped with its reason; tests/integration/test_rabbitmq_alone.py
# checks what RabbitMQ alone promises instead.
ALONE = "amqp"
NO_RECORD = r"without a store cannot .*RabbitMQ alone keeps no record|the amqp broker cannot"
_LEASE = "the lease is the connection: nothing expires while it lives, RabbitMQ redelivers a dead one's"
_PREFETCH = "a claim takes what the prefetch delivered: an empty or short claim is no empty queue"
_NO_RECORD = "no record of a job: nothing to prune, recover or deduplicate"
_HOSTILE = "no stored envelope to overwrite: test_rabbitmq_alone.py publishes hostile messages instead"
NOT_ALONE = {
    "test_lease_expiry_recovery_and_fencing": _LEASE,
    "test_silent_worker_jobs_recovered_before_lease_ends": _LEASE,
    "test_racing_recoveries_recover_once": _LEASE,
    "test_heartbeat_extends_lease": _LEASE,
    "test_many_workers_never_share_a_job": _PREFETCH,
    "test_batch_enqueue_keeps_order": _PREFETCH,
    "test_a_long_settle_batch_is_applied_whole": _PREFETCH,
    "test_priority_then_fifo": "quorum queues have no priorities on 3.x (capabilities.priority is False)",
    "test_results_expire_and_are_pruned": _NO_RECORD,
    "test_lost_jobs_without_attempts_expire_like_failures": _NO_RECORD + " (it is dead-lettered)",
    "test_same_id_is_stored_once": _NO_RECORD + ": a job sent twice runs twice",
    "test_each_tick_runs_once_across_workers": _NO_RECORD + ": run schedules on one worker",
    "test_result_waiters_here_wake_when_this_process_finishes_the_job": _NO_RECORD + " (results)",
    "test_claim_hands_back_malformed_jobs_beside_good_ones": _HOSTILE,
    "test_worker_fails_malformed_jobs_at_once_and_runs_the_rest": _HOSTILE,
}
NEEDS_RECORD = {
    "test_counts_by_task_follow_every_change_of_state",
    "test_requeue_jobs_leaves_a_job_whose_unique_key_is_taken",
    "test_bulk_actions_take_one_broker_call_per_page",
    "test_an_argument_search_looks_at_the_newest_jobs_it_is_given_only",
    "test_a_task_is_matched_whole_and_only_as_the_jobs_own",
    "test_a_result_over_max_payload_fails_the_job_and_the_worker_goes_on",
    "test_arguments_over_max_payload_are_refused_before_anything_is_stored",
    "test_a_1mb_argument_and_result_round_trip",
    "test_threads_sending_at_once_each_get_their_own_jobs",
    "test_threads_sending_one_unique_key_at_once_share_its_job",
    "test_a_failed_chain_step_fails_the_chain_result",
    "test_a_finished_job_keeps_its_lease_while_its_settle_is_slow",
    "test_a_handler_cannot_change_what_another_sees",
    "test_a_job_claimed_past_its_expiry_is_cancelled_not_run",
    "test_a_paused_queue_is_not_claimed",
    "test_apply_async_options_reach_the_job",
    "test_async_task_result_with_typed_arguments",
    "test_async_timeout_cancels_the_task",
    "test_autoretry_for_with_backoff_and_other_errors_fail_at_once",
    "test_bad_arguments_are_refused_before_anything_is_stored",
    "test_bad_jobs_fail_and_the_worker_survives",
    "test_bind_request_and_self_retry",
    "test_bulk_retry_cancel_delete_by_filter",
    "test_burst_worker_exits_when_idle",
    "test_burst_worker_runs_retries_that_fall_due_before_it_would_exit",
    "test_cancel_a_chain_while_its_first_step_runs",
    "test_cancel_a_group_before_it_runs",
    "test_cancel_a_running_job_ends_its_lease",
    "test_cancel_a_running_job_frees_its_concurrency_slot",
    "test_cancel_and_requeue",
    "test_cancelling_a_running_job_stops_it",
    "test_canvas_follows_celery_argument_order",
    "test_chain_feeds_each_result_to_the_next",
    "test_chord_callback_gets_results_and_errors",
    "test_chord_fires_once_even_if_members_finish_together",
    "test_chord_survives_its_waiters_worker_dying",
    "test_concurrency_limit_across_claims",
    "test_defer_gives_the_attempt_back",
    "test_delay_get_and_celery_state_names",
    "test_delayed_job_waits_until_due",
    "test_delete_jobs_frees_the_unique_key",
    "test_enqueue_claim_complete",
    "test_every_failed_attempt_is_kept_in_order",
    "test_exception_outside_retry_on_fails_at_once",
    "test_expires_revokes_a_job_not_started_in_time",
    "test_fail_keeps_error",
    "test_failed_step_fails_the_chain",
    "test_failure_keeps_type_message_traceback",
    "test_find_filters_by_enqueue_time",
    "test_find_filters_by_task_state_queue_and_arguments",
    "test_graceful_shutdown_lets_short_jobs_finish",
    "test_group_collects_results_in_order",
    "test_handlers_retry_independently",
    "test_inspection",
    "test_jobs_are_counted_in_stats",
    "test_keyset_pages_cover_every_job_once",
    "test_limited_jobs_do_not_block_others",
    "test_lost_worker_job_runs_again",
    "test_many_workers_respect_the_limit",
    "test_mixed_settle_batch",
    "test_oldest_ready_looks_past_priorities",
    "test_oldest_ready_per_queue",
    "test_pickle_habits_fail_at_send_and_say_what_to_change",
    "test_progress_is_fenced_and_visible",
    "test_progress_is_visible_and_published",
    "test_publish_errors_are_clear",
    "test_publish_fans_out_to_every_matching_handler",
    "test_purge",
    "test_queue_limit_on_one_worker",
    "test_rate_limit_bucket",
    "test_rate_limit_spaces_starts_without_spending_attempts",
    "test_recover_without_attempts_left_fails",
    "test_release_gives_the_attempt_back",
    "test_retry_requested_then_succeeds",
    "test_retry_with_backoff_spends_attempts",
    "test_revoke_a_pending_job",
    "test_run_at_and_priority_through_the_api",
    "test_shared_task_binds_to_the_current_app",
    "test_shutdown_hands_unfinished_jobs_back",
    "test_sync_task_gets_a_deep_frozen_copy",
    "test_task_concurrency_limit_holds_across_workers",
    "test_thread_timeout_fails_the_job",
    "test_unencodable_result_fails_clearly",
    "test_unheard_progress_leaves_no_event_records",
    "test_unique_key_and_delay_through_the_api",
    "test_unique_key_returns_pending_job",
    "test_unique_key_under_concurrent_sends",
    "test_unknown_job_is_none",
    "test_worker_in_thread_with_sync_sends",
    "test_worker_survives_an_event_loop_stall_past_poll_plus_5_s",
    "test_workers_registry",
    "test_workflows_take_generators_as_celery_users_write_them",
}
"""Tests that look a job up, list, cancel by id, use unique keys, limits or progress."""


def _alone(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("broker_url") == ALONE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = NOT_ALONE.get(getattr(item, "originalname", item.name))
        if reason is not None and _alone(item):
            item.add_marker(pytest.mark.skip(reason=f"RabbitMQ alone: {reason}"))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    if not (_alone(pyfuncitem) and pyfuncitem.originalname in NEEDS_RECORD):
        return (yield)
    with pytest.raises(UnsupportedFeature, match=NO_RECORD):
        yield
    return True


class Producer:
    """Sends from asynchronous code, or from synchronous code in a thread of its own."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind} producer>"

    async def send(self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        if self.kind == "async":
            return await task.asend(*args, **kwargs)
        return await asyncio.to_thread(task.send, *args, **kwargs)

    async def send_many(self, task: Task[Any, R], calls: Iterable[tuple[Any, ...]]) -> list[JobHandle[R]]:
        if self.kind == "async":
            return await task.asend_many(calls)
        return await asyncio.to_thread(task.send_many, calls)


@pytest.fixture(params=["async", "sync"])
def producer(request: pytest.FixtureRequest) -> Producer:
    return Producer(request.param)
