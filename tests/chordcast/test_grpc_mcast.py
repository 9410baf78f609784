"""Eight node processes on loopback, three external clients in one group through different
access nodes: delivery, a forwarder SIGKILLed mid-stream, leave, destroy, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from chordcast import Client, ClientError, GroupMessage, Subscription
from chordcast.localring import LocalRing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ring() -> Iterator[LocalRing]:
    nodes = LocalRing(extra_args=["--stabilize-interval", "0.2", "--rpc-timeout", "0.5",
                                  "--parent-timeout", "1.0", "--successors", "3",
                                  "--max-children", "1"])
    with nodes.running(8) as r:
        yield r


def rotated(addresses: list[str], first: int) -> list[str]:
    return addresses[first:] + addresses[:first]


async def collect(sub: Subscription, into: list[GroupMessage]) -> None:
    async for m in sub:
        into.append(m)


async def until(check, timeout: float = 30.0, what=lambda: "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not reached before the deadline {what()}"
        await asyncio.sleep(0.05)


async def send_with_retry(client: Client, group: str, text: str) -> int:
    for attempt in range(20):
        try:
            return await client.send(group, text)
        except ClientError:
            await asyncio.sleep(0.2 * (attempt + 1))  # the ring or tree is repairing
    raise AssertionError(f"could not send {text!r}")


def seqs(messages: list[GroupMessage]) -> list[int]:
    return [m.seq for m in messages if m.kind == "message"]


async def test_three_clients_forwarder_crash_leave_destroy(ring: LocalRing) -> None:
    addresses = [n.address for n in ring.live()]
    sender = Client(rotated(addresses, 0))
    created = await sender.create("chat")
    assert created.root in addresses and len(created.token) == 32

    clients = [Client(rotated(addresses, i)) for i in (1, 3, 5)]
    subs = [c.join("chat", member=f"client{i}") for i, c in enumerate(clients)]
    for s in subs:
        await s.open()
    assert [s.access_node for s in subs] == [addresses[1], addresses[3], addresses[5]]
    got: list[list[GroupMessage]] = [[], [], []]
    readers = [asyncio.ensure_future(collect(s, g)) for s, g in zip(subs, got, strict=True)]

    for k in range(10):
        assert await sender.send("chat", f"hello {k}") == k + 1
    await until(lambda: all(len(seqs(g)) == 10 for g in got))
    assert all(seqs(g) == list(range(1, 11)) for g in got)
    assert got[0][0].text == "hello 0" and got[0][0].sender == addresses[0]

    # Mid-stream, SIGKILL a node that forwards for the group (not the root, not the sender's
    # access node); prefer one that serves no client.
    async def flow() -> None:
        for k in range(10, 70):
            await send_with_retry(sender, "chat", f"hello {k}")
            await asyncio.sleep(0.03)

    traffic = asyncio.ensure_future(flow())
    await until(lambda: all(len(seqs(g)) >= 20 for g in got))
    forwarders = []
    for address in addresses[1:]:
        async with Client(address) as probe:
            for role in await probe.roles():
                if role.group == "chat" and role.children and not role.root:
                    forwarders.append(address)
    assert forwarders, "the tree has no forwarder to kill"
    access = {s.access_node for s in subs}
    victim_address = sorted(forwarders, key=lambda a: a in access)[0]
    victim = next(n for n in ring.nodes if n.address == victim_address)
    ring.kill(victim)
    await traffic

    info = await sender.info("chat")
    assert info.last_seq >= 70
    expected = list(range(1, info.last_seq + 1))
    await until(lambda: all(seqs(g) == expected for g in got), timeout=60)
    texts = {m.seq: m.text for m in got[0] if m.kind == "message"}
    assert all({m.seq: m.text for m in g if m.kind == "message"} == texts for g in got)

    # Leave: client 2 stops receiving, the others go on.
    await clients[2].leave(subs[2])
    await readers[2]
    before = len(seqs(got[2]))
    last = await send_with_retry(sender, "chat", "after leave")
    await until(lambda: all(seqs(g)[-1] == last for g in got[:2]))
    assert len(seqs(got[2])) == before

    # Destroy: only with the creator's token; members are told the group ended.
    with pytest.raises(ClientError) as exc:
        await clients[0].destroy("chat", "0" * 32)
    assert exc.value.code == "PERMISSION_DENIED"
    await sender.destroy("chat", created.token)
    await asyncio.wait_for(asyncio.gather(*readers[:2]), 30)
    assert got[0][-1].kind == "ended" and got[1][-1].kind == "ended"
    with pytest.raises(ClientError) as exc:
        await sender.send("chat", "too late")
    assert exc.value.code == "NOT_FOUND"

    with pytest.raises(ClientError) as exc:
        await clients[0].join("no-such-group").open()
    assert exc.value.code == "NOT_FOUND"
    for c in [sender, *clients]:
        await c.close()


async def test_client_resumes_at_another_node_when_its_access_node_dies(ring: LocalRing
                                                                        ) -> None:
    addresses = [n.address for n in ring.live()]
    sender = Client(rotated(addresses, 0))
    await sender.create("resume")
    victim_index = len(addresses) - 1
    client = Client(rotated(addresses, victim_index))
    got: list[GroupMessage] = []
    sub = client.join("resume")
    await sub.open()
    assert sub.access_node == addresses[victim_index]
    reader = asyncio.ensure_future(collect(sub, got))
    for k in range(5):
        await sender.send("resume", f"m{k}")
    await until(lambda: len(seqs(got)) == 5)

    victim = next(n for n in ring.nodes if n.address == addresses[victim_index])
    ring.kill(victim)
    for k in range(5, 20):
        await send_with_retry(sender, "resume", f"m{k}")
    last = (await sender.info("resume")).last_seq
    await until(lambda: seqs(got) == list(range(1, last + 1)), timeout=60)
    assert sub.access_node != addresses[victim_index]  # it re-attached elsewhere
    assert sub.reconnects == 0  # and messages since: the budget counts failures in a row
    await sub.close()
    await reader
    await sender.close()
    await client.close()


async def test_oversized_payload_is_refused(ring: LocalRing) -> None:
    async with Client(ring.live()[0].address) as c:
        await c.create("big")
        with pytest.raises(ClientError) as exc:
            await c.send("big", b"x" * ((1 << 20) + 1))
        assert exc.value.code == "INVALID_ARGUMENT" and "1 MiB" in str(exc.value)


async def test_detach_a_named_member_on_every_node_ends_it_for_good(ring: LocalRing) -> None:
    """`group leave --member` (Client.detach) on a node that is not the group's root counts
    the member it detached, and the member's subscription ends instead of re-attaching."""
    addresses = [n.address for n in ring.live()]
    async with Client(addresses[0]) as admin:
        created = await admin.create("leaving")
        for i, address in enumerate(addresses[:4]):
            async with Client(address) as member:
                sub = member.join("leaving", member=f"m{i}")
                await sub.open()
                got: list[GroupMessage] = []
                reader = asyncio.ensure_future(collect(sub, got))
                assert await member.detach("leaving", f"m{i}") == 1, address
                await asyncio.wait_for(reader, 10)  # the iteration ends: no re-attach
                assert sub.reconnects == 0 and got == []
                assert await member.detach("leaving", f"m{i}") == 0
        await admin.destroy("leaving", created.token)


async def test_a_send_whose_answer_was_lost_is_retried_through_another_node_once(
        ring: LocalRing) -> None:
    """The first access node stamps the message but its answer never reaches the client (a
    proxy forwards the send, then holds the answer); the client times out and retries through
    the next node with the same message id: one sequence number, one delivery."""
    import grpc

    from chordcast import link
    from chordcast.v1 import mcast_pb2, mcast_pb2_grpc

    addresses = [n.address for n in ring.live()]
    real = addresses[1]
    stamped: list[int] = []

    async def swallow(method: str, body: bytes) -> bytes:
        request = mcast_pb2.SendRequest.FromString(body)
        async with grpc.aio.insecure_channel(real) as channel:
            reply = await mcast_pb2_grpc.MulticastStub(channel).Send(request, timeout=10)
        stamped.append(reply.seq)
        await asyncio.sleep(60)  # the answer is lost: the client's deadline passes first
        return reply.SerializeToString()

    streams = link.Streams()

    async def session(requests: object, context: grpc.aio.ServicerContext) -> None:
        await streams.serve(context, swallow)

    proxy = grpc.aio.server()
    proxy.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "chordcast.v1.Multicast", {"Session": grpc.stream_stream_rpc_method_handler(
            session, request_deserializer=link.FRAMES.FromString,
            response_serializer=link.FRAMES.SerializeToString)})])
    port = proxy.add_insecure_port("127.0.0.1:0")
    await proxy.start()
    try:
        owner = Client(addresses[2])
        await owner.create("retried")
        got: list[GroupMessage] = []
        async with owner.join("retried") as sub:
            reader = asyncio.ensure_future(collect(sub, got))
            flaky = Client([f"127.0.0.1:{port}", addresses[3]], timeout=2.0)
            seq = await flaky.send("retried", "once")
            assert stamped == [seq]  # the first attempt was stamped, the retry got its number
            await until(lambda: seqs(got) == [seq])
            after = await owner.send("retried", "next")
            await until(lambda: seqs(got) == [seq, after])
            assert after == seq + 1  # no number was spent on the retry
            assert [m.text for m in got if m.kind == "message"] == ["once", "next"]
            reader.cancel()
            await flaky.close()
        await owner.close()
    finally:
        await proxy.stop(None)
    ring.check_logs()


async def test_64_messages_of_1_mib_in_flight_reach_every_member_once() -> None:
    """Batches on every path (client session, root to replicas, parent to child, access node
    to member) stay under gRPC's message limit however much is in flight. Its own ring with the
    default timeouts: under this load the module ring's 0.5 s RPC timeout takes busy nodes for
    dead, and the group's root moves while messages are in flight."""
    bulk = LocalRing(extra_args=["--max-children", "1"])
    with bulk.running(5):
        addresses = [n.address for n in bulk.live()]
        owner = Client(addresses[0])
        await owner.create("bulk")
        members = [Client(addresses[i]) for i in (2, 4)]
        got: list[list[GroupMessage]] = [[], []]
        subs = [m.join("bulk") for m in members]
        for s in subs:
            await s.open()
        readers = [asyncio.ensure_future(collect(s, into))
                   for s, into in zip(subs, got, strict=True)]
        payloads = [bytes([i]) * (1 << 20) for i in range(64)]
        sent = await asyncio.gather(*(owner.send("bulk", p) for p in payloads))
        assert sorted(sent) == list(range(1, 65))
        await until(lambda: all(len(seqs(g)) == 64 for g in got), timeout=60,
                    what=lambda: f"members have {[seqs(g)[-3:] for g in got]} of 64")
        by_seq = dict(zip(sent, payloads, strict=True))
        for messages in got:
            assert seqs(messages) == list(range(1, 65))
            assert all(m.payload == by_seq[m.seq] for m in messages if m.kind == "message")
        for s, r in zip(subs, readers, strict=True):
            await s.close()
            await r
        for c in [owner, *members]:
            await c.close()


async def test_a_stalled_subscriber_lags_and_resumes_while_the_others_keep_up() -> None:
    """A subscriber that stops reading falls behind by more than its access node buffers
    (--member-buffer): the tree does not wait for it, another member gets everything while it
    is still stalled, and once it reads again it sees a `lagged` event and then every message
    exactly once, in order (resumed from the archive)."""
    small = LocalRing(extra_args=["--member-buffer", str(1 << 20)])
    with small.running(3):
        addresses = [n.address for n in small.live()]
        owner = Client(addresses[0])
        await owner.create("firehose")
        quick_client, slow_client = Client(addresses[1]), Client(addresses[2])
        quick, slow = quick_client.join("firehose"), slow_client.join("firehose")
        await quick.open()
        await slow.open()
        got: list[GroupMessage] = []
        reader = asyncio.ensure_future(collect(quick, got))
        count, blob = 320, b"z" * (64 << 10)  # 20 MiB: far beyond every buffer on the way
        for k in range(count):
            await owner.send("firehose", blob + str(k).encode())
        await until(lambda: len(seqs(got)) == count, timeout=60)  # while `slow` is stalled
        late: list[GroupMessage] = []
        slow_reader = asyncio.ensure_future(collect(slow, late))
        await until(lambda: len(seqs(late)) == count, timeout=60)
        kinds = [m.kind for m in late]
        assert "lagged" in kinds
        assert seqs(late) == list(range(1, count + 1))  # exactly once, in order, no gap
        assert all(m.payload.endswith(str(m.seq - 1).encode()) for m in late
                   if m.kind == "message")
        for sub, task in ((quick, reader), (slow, slow_reader)):
            await sub.close()
            await task
        for c in (owner, quick_client, slow_client):
            await c.close()


async def test_access_lists_without_tls_are_refused_not_ignored(ring: LocalRing) -> None:
    """Without TLS there are no identities: a group that asks for access lists is refused
    with a clear reason rather than created open."""
    async with Client(ring.live()[0].address) as c:
        with pytest.raises(ClientError) as err:
            await c.create("needs-tls", publishers=["alice"])
        assert err.value.code == "FAILED_PRECONDITION"
        assert "need a ring with TLS" in str(err.value)
        with pytest.raises(ClientError):
            await c.info("needs-tls")  # nothing was made
