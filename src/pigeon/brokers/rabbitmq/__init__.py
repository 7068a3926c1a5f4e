"""``amqp://host/?store=…`` — RabbitMQ carries the jobs, a companion store keeps their record.

Spelled ``App("amqp://…", store="postgresql://…")`` (or ``$PIGEON_STORE`` beside
``$PIGEON_URL``, or ``OPTIONS["store"]`` in Django's ``TASKS``); the store is any
other pigeon broker URL. The store is the record of every job: its state,
result, errors, unique key, limit counters and fencing token, so results,
``app.job(id)``, cancel, listing and limits work as on the store alone.
RabbitMQ carries one delivery per job that becomes ready, to a durable queue
per pigeon queue (``<namespace>.<queue>``):

- **send**: the jobs are written to the store first, then their deliveries are
  published with publisher confirms and ``mandatory`` on; a batch awaits its
  confirms together, and a nack or a return raises :class:`BrokerError` (the
  jobs are stored by then, so they still run: a worker's claim finds them).
- **claim**: a worker consumes its queues with a per-consumer prefetch
  (``?prefetch=``, default 64; never global QoS), takes the deliveries it has,
  acknowledges them, and claims jobs in the store under fresh fencing tokens.
  The store chooses which jobs: RabbitMQ's delivery order cannot keep pigeon's
  contract (highest priority first, FIFO within a priority, limit keys skipped
  without blocking; quorum queues have no priorities on 3.x). A delivery whose
  job was cancelled or has finished yields no claim and is dropped.
- **long jobs** run under the store's lease, kept alive by the worker's
  heartbeat; no delivery stays unacknowledged while a job runs, and a
  delivery not taken by a claim within ``_HOLD`` seconds is acknowledged (the
  store keeps its job), so RabbitMQ's ``consumer_timeout`` never fires.
- **delays and retries** stay in the store as SCHEDULED jobs until due; nothing
  delayed is held in RabbitMQ (no ``x-delayed-message`` plugin).
- **wake-ups**: a delivery wakes an idle worker on any machine at once.

Queues are quorum queues unless ``?queue_type=classic``; they are declared with
the same arguments every time, so a second start never meets "inequivalent
arg". The server's version and capabilities are read on open, and a setting
that cannot work there fails at once with a clear message. The connection is
aio-pika's robust connection (``pigeon[rabbitmq]``), with separate publishing
and consuming channels; after a reconnection the consumers are declared again
and the server redelivers what was unacknowledged.

Without a store, ``amqp://`` is RabbitMQ alone (``_alone.py``): it keeps no record
of a job, so results, lookup, cancel, unique keys and limits are refused, and events
are a topic exchange (``_events_topic.py``).
"""

from pigeon.brokers.rabbitmq._broker import RabbitBroker

__all__ = ["RabbitBroker"]
