"""The Kafka backend (aiokafka, Kafka 4.x): how each promise of the port maps onto Kafka.

    port                         Kafka
    ---------------------------  ----------------------------------------------------------------
    capability topic             topic, `topic_partitions` partitions (keyless messages go
                                 round-robin, keyed ones by murmur2(key))
    group on a topic             consumer group "<group>@<topic>" (round-robin assignor)
    publish                      idempotent producer, acks=all; returns "<partition>-<offset>";
                                 records reach the producer in call order (ordered_publish,
                                 outbox.py); publish_many sends a list without waiting between
    ack                          the member commits the contiguous acked prefix of each
                                 partition (coalesced; on rebalance and close)
    invisibility / extend        an in-memory timer per delivered record
    nack(delay), timeout         re-publish to the group's retry topic "tb.retry.<group>.<topic>
                                 .<digest>" with tb-id / tb-attempt / tb-not-before headers, then
                                 settle the original (groups.py)
    retry limit, dead letter     after `max_attempts` deliveries: publish to "tb.dlq.<group>"
                                 (`dead_letter_topic`) with x-dlq-* headers
    lite parent topic            one topic, `reply_partitions` partitions, LogAppendTime,
                                 retention max(2 x idle, 1 h)
    lite topic                   record key on partition murmur2(name) mod partitions
    InterestSet, ReadySet, poll  per client, in memory; the client reads only the partitions of
                                 its subscriptions and skips other keys there (replies.py)
    re-attach (another group)    read that one partition from its beginning, keep the key
    clients sharing a group      holds assigned through consumer group "<group>@<parent>"
                                 with a custom assignor (membership.py); a client whose group
                                 is its own client id (the gateway's) skips it: alone by name
    liveness, abandon()          that group's session timeout (`session_timeout`); abandon
                                 stops heartbeating without LeaveGroup
    lite idle expiry             logical: history older than an idle gap is not delivered;
                                 retention deletes the bytes later
    quotas                       subscriptions per client, enforced client-side
    table                        compacted single-partition topic "tb.table.<name>", read fully
                                 at open and tailed; a write returns once acked (acks=all) and
                                 read back by this instance (table.py)
    topic settings               compacted topic "tb.topics" (JSON per topic), read at start
    security                     security_protocol, SASL (PLAIN, SCRAM-SHA-256/512), TLS files:
                                 the same options on every client (security.py)
    names                        Kafka's [A-Za-z0-9._-], <= 249 chars, checked before any call;
                                 "tb." topics and "tb-" headers are reserved for the adapter

Reply channels without the rejected patterns: no instance reads the whole reply topic, and
nothing polls a store. An instance that mints its task ids with
`KafkaLiteConsumer.routed_name` (owner group "tb.owners@<parent>") reads only the partitions it
owns; re-attach reads one partition. `bench/reply_patterns.py` measures both against an exclusive
topic per instance, broadcast + filter, and polling a shared store.

Broker settings this adapter relies on: `group.min.session.timeout.ms` <= `session_timeout`
(a refused value fails group_consumer / lite_consumer with InvalidRequestError), and ideally
`group.initial.rebalance.delay.ms=0`: Kafka holds the first join of every new group that long
(3 s by default), and a lite client of a shared or one-off group (a re-attach) joins one.

Delivery is at-least-once everywhere. Where this backend is weaker than the lite engine, the
module that implements the promise says so (attempt counts before a first retry, acked
messages redelivered when a lite topic moves between members of a shared group, expiry seen
only by subscribers that arrive after a gap).
"""

from .backend import KafkaBackend
from .replies import KafkaLiteConsumer
from .groups import KafkaGroupConsumer

__all__ = ["KafkaBackend", "KafkaGroupConsumer", "KafkaLiteConsumer"]
