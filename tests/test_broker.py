"""chatq's Redis broker transport: one shared client per connection pool, on a real Redis."""

from __future__ import annotations

import threading

from kombu import Connection

TRANSPORT = "worker.broker:Transport"


def test_a_channel_shares_one_client_per_pool_and_renews_it_with_the_pool(redis_url):
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        with channel.conn_or_acquire() as client:
            assert client is first
        # The polling loop's client stays its own, on its own pool.
        polling = channel._create_client(asynchronous=True)
        assert polling is not first and polling.connection_pool is channel.async_pool
        # A renewed pool (kombu drops it on reconnect) gets a client of its own.
        channel._pool = None
        renewed = channel._create_client()
        assert renewed is not first and renewed.connection_pool is channel.pool
        assert renewed.ping()


def test_the_shared_client_serves_many_threads_and_kombu_round_trips(redis_url, redis_client):
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.default_channel
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(200):
                    with channel.conn_or_acquire() as client:
                        client.rpush(f"broker-test-{n}", i)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for n in range(8):
            assert [int(v) for v in redis_client.lrange(f"broker-test-{n}", 0, -1)] == list(
                range(200)
            )
        queue = conn.SimpleQueue("broker-test-queue")
        queue.put({"hello": "world"})
        message = queue.get(timeout=5)
        assert message.payload == {"hello": "world"}
        message.ack()
        queue.close()


def test_monitoring_sees_a_redis_url_not_the_transports_class_path():
    from worker.broker import Connection as ChatqConnection

    conn = ChatqConnection("redis://:secret@db.example:6390/3", transport=TRANSPORT)
    assert conn.as_uri() == "redis://:**@db.example:6390/3"
    assert conn.as_uri(include_password=True) == "redis://:secret@db.example:6390/3"
    tls = ChatqConnection("rediss://db.example:6380/0?ssl_cert_reqs=required", transport=TRANSPORT)
    assert tls.as_uri().startswith("rediss://")
    assert conn.clone().transport_cls == TRANSPORT  # the connection itself is unchanged


def test_the_apps_connections_are_the_ones_monitoring_can_read(env, producer_for):
    app = producer_for(env).runtime.app
    with app.connection_for_read() as conn:
        assert conn.as_uri().startswith("redis://")
        assert conn.transport.driver_type == "redis"
