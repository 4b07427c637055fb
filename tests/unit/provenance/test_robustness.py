"""Malformed manifests raise safeguard errors (clear CLI exits), never a stray KeyError/TypeError."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeguard.errors import SafeguardError
from safeguard.provenance import (
    Envelope,
    dataset_predicate,
    generation_predicate,
    load_manifest,
    scrub_predicate,
    training_predicate,
    verify_chain,
)
from safeguard.provenance.predicates import (
    DATASET_PREDICATE,
    GENERATION_PREDICATE,
    SCRUB_PREDICATE,
    SLSA_PROVENANCE_V1,
)

SHA = "ab" * 32
VALID = {
    DATASET_PREDICATE: dataset_predicate(name="d", record_count=1, merkle_root=SHA),
    SCRUB_PREDICATE: scrub_predicate(
        policy_name="p", inputs=[("a", SHA)], outputs=[("b", SHA)], entity_counts={"PERSON": 1}
    ),
    SLSA_PROVENANCE_V1: training_predicate(
        dp_config={"target_epsilon": 1.0}, datasets=[("b", SHA)], ledger={"epsilon_spent": 0.5}
    ),
    GENERATION_PREDICATE: generation_predicate(
        model=("m", SHA), watermark={"scheme": "gumbel", "key_id": "k"}
    ),
}

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_statements_fail_cleanly(tmp_path_factory, key, data) -> None:
    ptype = data.draw(st.sampled_from(sorted(VALID)))
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "x", "digest": {"sha256": SHA}}],
        "predicateType": ptype,
        "predicate": copy.deepcopy(VALID[ptype]),
    }
    paths = [p for p in _paths(statement) if p]
    path = data.draw(st.sampled_from(paths))
    parent = statement
    for part in path[:-1]:
        parent = parent[part]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(junk)
    folder = tmp_path_factory.mktemp("m")
    env = Envelope(payload=json.dumps(statement).encode()).signed(key)
    target = folder / "m.json"
    target.write_text(env.to_json())
    try:
        load_manifest(target)
        verify_chain(target, public_keys=[key.public_key])
    except SafeguardError:
        pass
