"""Reference reuse: ``{"ref": hash}`` after the first upload, resent after eviction."""

from __future__ import annotations

import httpx
from helpers import RED, Recorder, red_ref, square
from psr_server import PsrServer

from psr_reward_client import RewardClient

SC = {"subject_consistency": 1.0}


def _refs_sent(rec: Recorder) -> list[object]:
    return [
        s["reference"]
        for p in rec.posts()
        if p.body
        for it in p.body["items"]
        for s in it["subjects"]
    ]


def _evictions(server: PsrServer) -> float:
    text = httpx.get(f"{server.url}/metrics", trust_env=False).text
    line = next(
        x for x in text.splitlines() if x.startswith("psr_reward_reference_cache_evictions_total")
    )
    return float(line.split()[-1])


def test_reuse_then_resend_after_eviction(server: PsrServer) -> None:
    image = square(RED, (4, 4, 30, 30))
    ref_a = red_ref(1)
    rec = Recorder()
    with RewardClient(server.url, event_hooks=rec.hooks()) as client:
        first = client.score([image, image], "red", [[("red", ref_a)]] * 2, rewards=SC)
        hash_a = first[0].subjects[0].reference
        assert isinstance(hash_a, str)
        sent = _refs_sent(rec)
        assert len(sent) == 2 and all(isinstance(r, str) and len(r) > 100 for r in sent)

        rec.clear()
        again = client.score([image], "red", [[("red", ref_a)]], rewards=SC)
        assert _refs_sent(rec) == [{"ref": hash_a}]
        assert [p.status for p in rec.posts()] == [200]
        assert again.raw[0] == first.raw[0]

        # Two other references fill the two-entry cache: A is evicted.
        before = _evictions(server)
        client.score(
            [image, image], "red", [[("red", red_ref(2))], [("red", red_ref(3))]], rewards=SC
        )
        assert _evictions(server) > before

        rec.clear()
        resent = client.score([image], "red", [[("red", ref_a)]], rewards=SC)
        posts = rec.posts()
        assert [p.status for p in posts] == [422, 200]
        assert posts[0].body and posts[0].body["items"][0]["subjects"][0]["reference"] == {
            "ref": hash_a
        }
        assert posts[1].body and isinstance(
            posts[1].body["items"][0]["subjects"][0]["reference"], str
        )
        assert resent.raw[0] == first.raw[0]


def test_a_shared_reference_is_encoded_and_learned_once_per_call(server: PsrServer) -> None:
    ref = red_ref(5)
    rec = Recorder()
    images = [square(RED, (i, i, 30 + i, 30 + i)) for i in range(4)]
    with RewardClient(server.url, event_hooks=rec.hooks(), chunk_size=2) as client:
        r1 = client.score(images, "red", [[("red", ref)]] * 4, rewards=SC)
        hashes = {it.subjects[0].reference for it in r1}
        assert len(hashes) == 1
        rec.clear()
        r2 = client.score(images, "red", [[("red", ref)]] * 4, rewards=SC)
    assert _refs_sent(rec) == [{"ref": hashes.pop()}] * 4
    assert r2.rewards == r1.rewards
