"""A row leaves the outbox only when the broker acknowledged *that* message, whatever the message ids do.

paho's message ids are 16 bits and wrap; acknowledgements can overtake ``publish()``'s return; health,
status and info are published beside the detections. Through a real mosquitto, with the daemon's real
publisher and outbox, SIGKILLed at random points while the broker holds back its acknowledgements.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_daemon.config import MqttConfig
from edge_daemon.publish.mqtt import MqttPublisher
from tests.conftest import free_port, start_mosquitto
from tests.helpers.ackfaults import kill_rounds, wait_until
from tests.helpers.collector import Collector


def test_a_reused_message_id_never_acknowledges_another_message(tmp_path) -> None:
    """A health message is acknowledged; its id comes round again for a detections message that the broker
    never acknowledges: the detections message must stay on disk."""
    broker = start_mosquitto(tmp_path)
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, outbox={"path": tmp_path / "o.sqlite"})
    pub = MqttPublisher.from_config(cfg, "dev")
    pub.start()
    try:
        assert pub.connected
        pub.publish_health({"device_id": "dev"})
        health_mid = pub.client._last_mid
        assert wait_until(lambda: not pub.client._out_messages, 5), (
            "the broker acknowledged the health message"
        )
        broker.proc.send_signal(signal.SIGSTOP)  # connected, but nothing is acknowledged any more
        pub.client._last_mid = health_mid - 1  # the 16-bit ids wrapped: the next message reuses the id
        pub.publish_detections("cam0", b'{"seq": 0}')
        assert pub.client._last_mid == health_mid
        time.sleep(0.5)
        assert pub.outbox is not None and pub.outbox.pending() == 1, (
            "the broker never acknowledged this message, yet it left the outbox"
        )
    finally:
        broker.proc.send_signal(signal.SIGCONT)
        pub.close(timeout=5)
        broker.proc.terminate()
        broker.proc.wait(10)


def test_message_ids_wrap_under_crashes_and_nothing_is_lost(tmp_path) -> None:
    """CI version of the fault-injection run (scripts/fault_injection.py wrap): ids wrap every 512
    messages instead of 65,535, so several wraps happen within each life of the daemon."""
    produced, received, wraps = kill_rounds(tmp_path, rounds=4, wrap=512, rate=400, seed=7)
    lost = sorted(produced - received)
    assert not lost, f"{len(lost)} of {len(produced)} lost, e.g. {lost[:10]}"
    assert wraps >= 5, f"the ids wrapped in every life ({wraps} wraps)"


def _kick(port: int, client_id: str) -> None:
    """Drop a client's connection without touching the broker: connect with its client id (the broker
    closes the older connection, MQTT's session takeover), then leave."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    thief = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    thief.connect("127.0.0.1", port)
    thief.loop_start()
    time.sleep(0.2)
    thief.disconnect()
    thief.loop_stop()


@pytest.mark.parametrize("slow_resend", [False, True])
def test_stored_messages_go_out_before_live_ones_across_reconnects(tmp_path, slow_resend) -> None:
    """Stored messages are replayed in order and live ones wait until the replay caught up, also when the
    connection drops several times during the replay (a newer replay supersedes the older one).

    ``slow_resend``: paho sends again what was in flight only after on_connect returns, and on_connect
    starts the new replay; here on_connect returns late, so a replay that does not wait for those resends
    sends later rows first (seen once in CI by timing alone: stored 11738 before 11400)."""
    # mosquitto keeps at most 1000 undelivered messages per subscriber by default and drops the rest
    broker = start_mosquitto(tmp_path, extra="max_queued_messages 0\n")
    collector = Collector(broker.port, "edge/dev/+/detections", client_id="order")
    outbox_path = tmp_path / "o.sqlite"
    stored = 20_000
    from edge_daemon.publish.outbox import Outbox

    box = Outbox(outbox_path, max_messages=10 * stored)
    box.add_many(
        [("edge/dev/cam0/detections", f'{{"camera": "cam0", "seq": {n}}}'.encode()) for n in range(stored)]
    )
    box.close()
    cfg = MqttConfig(
        host="127.0.0.1", port=broker.port, outbox={"path": outbox_path, "max_messages": 10 * stored}
    )
    pub = MqttPublisher.from_config(cfg, "dev")
    if slow_resend:
        on_connect = pub._on_connect

        def late(*args: Any) -> None:
            on_connect(*args)
            time.sleep(0.3)  # the network thread resends the in-flight messages after this returns

        pub.client.on_connect = late
    stop = threading.Event()
    live = [stored]

    def produce() -> None:
        while not stop.is_set():
            pub.publish_detections("cam0", f'{{"camera": "cam0", "seq": {live[0]}}}'.encode())
            live[0] += 1
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    kicks = 0
    try:
        pub.start()
        producer.start()
        for threshold in (2000, 6000, 10000):  # drop the connection during the replay, three times
            wait_until(lambda t=threshold: len(collector.seqs) > t, 30)  # type: ignore[misc]
            if pub.replayed == 0:
                _kick(broker.port, "edge-daemon-dev")
                kicks += 1
            wait_until(lambda: pub.connected, 30)
        stop.set()
        producer.join(10)
        assert pub.flush(60)
        wait_until(lambda: set(range(live[0])) <= set(collector.seqs), 60)
    finally:
        stop.set()
        pub.close(timeout=10)
        collector.stop()
        broker.proc.terminate()
        broker.proc.wait(10)
    assert kicks >= 2, "the connection dropped during the replay"
    seqs = collector.seqs
    assert set(range(live[0])) <= set(seqs), "nothing lost"
    first: dict[int, int] = {}
    for i, s in enumerate(seqs):
        first.setdefault(s, i)
    last_stored = max(first[s] for s in range(stored))
    first_live = min(first[s] for s in range(stored, live[0]))
    assert last_stored < first_live, "a live message went out before a stored one"
    stored_order = sorted(range(stored), key=lambda s: first[s])
    assert stored_order == list(range(stored)), "stored messages arrived out of order"


def test_retained_state_set_while_the_broker_was_away_is_there_after_it_returns(tmp_path: Path) -> None:
    """Occupancy counts and snapshots are retained state: a value set while disconnected goes out after
    the reconnect, and the broker ends up holding the newest one."""
    port = free_port()
    broker = start_mosquitto(tmp_path, port=port)
    cfg = MqttConfig(host="127.0.0.1", port=port, outbox={"path": tmp_path / "o.sqlite"})
    pub = MqttPublisher.from_config(cfg, "dev")
    try:
        pub.start()
        pub.publish_state("cam0/zones/door/all", b"1")
        assert pub.flush(10)
        broker.proc.terminate()
        broker.proc.wait(10)
        wait_until(lambda: not pub.connected, 10)
        pub.publish_state("cam0/zones/door/all", b"0")  # the broker is away
        broker = start_mosquitto(tmp_path, port=port)  # a new broker: it knows nothing retained
        wait_until(lambda: pub.connected, 60)
        assert pub.flush(10)
        got: list[bytes] = []
        collector = mqtt.Client(CallbackAPIVersion.VERSION2)
        collector.on_message = lambda c, u, m: got.append(bytes(m.payload))
        collector.connect("127.0.0.1", port)
        collector.subscribe("edge/dev/cam0/zones/door/all", qos=1)
        collector.loop_start()
        wait_until(lambda: bool(got), 10)
        collector.loop_stop()
        collector.disconnect()
        assert got == [b"0"]
    finally:
        pub.close(timeout=5)
        broker.proc.terminate()
        broker.proc.wait(10)


def test_events_published_while_the_broker_is_away_all_arrive(tmp_path: Path) -> None:
    """Events go through the disk outbox like detections: those published during an outage arrive, in
    order, once the broker is back."""
    port = free_port()
    persist = f"persistence true\npersistence_location {tmp_path}/\n"  # the collector's session survives
    broker = start_mosquitto(tmp_path, port=port, extra=persist)
    collector = Collector(port, "edge/dev/+/events", client_id="events")
    cfg = MqttConfig(host="127.0.0.1", port=port, outbox={"path": tmp_path / "o.sqlite"})
    pub = MqttPublisher.from_config(cfg, "dev")
    try:
        pub.start()
        event = '{{"camera": "cam0", "seq": {}}}'
        pub.publish_many([("cam0/events", event.format(n).encode()) for n in range(10)])
        assert pub.flush(10)
        broker.proc.terminate()
        broker.proc.wait(10)
        wait_until(lambda: not pub.connected, 10)
        pub.publish_many([("cam0/events", event.format(n).encode()) for n in range(10, 50)])  # away
        assert pub.outbox is not None and pub.outbox.pending() >= 40
        broker = start_mosquitto(tmp_path, port=port, extra=persist)
        wait_until(lambda: pub.connected, 60)
        assert pub.flush(30)
        wait_until(lambda: set(range(50)) <= set(collector.seqs), 30)
    finally:
        pub.close(timeout=5)
        collector.stop()
        broker.proc.terminate()
        broker.proc.wait(10)
    assert sorted(set(collector.seqs)) == list(range(50)), "every event arrived"
