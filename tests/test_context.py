"""UserContext: hashed once, equal contexts hash alike, pickles by its fields."""
import os
import pickle
import subprocess
import sys

from flowchain import UserContext


def test_equal_contexts_hash_alike_and_key_dicts():
    a, b = UserContext("acme", "ana", "pro"), UserContext("acme", "ana", "pro")
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert UserContext("acme", "ana", "free") != a
    assert "_hash" not in repr(a) and a.labels() == {"tenant": "acme", "user": "ana",
                                                     "tier": "pro"}


def test_a_pickled_context_rehashes_in_another_process():
    ctx = UserContext("acme", "ana", "pro")
    code = ("import pickle, sys; from flowchain import UserContext; "
            "c = pickle.loads(sys.stdin.buffer.read()); "
            "print(hash(c) == hash(UserContext('acme', 'ana', 'pro')))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(ctx),
                         capture_output=True, timeout=60, env=dict(os.environ, PYTHONHASHSEED="random"))
    assert out.stdout.strip() == b"True", out.stderr
    assert pickle.loads(pickle.dumps(ctx)) == ctx
