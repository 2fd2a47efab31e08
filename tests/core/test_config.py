import pytest

from dinobench.config import apply_options, parse_options, protocol_hash
from dinobench.errors import ConfigError
from dinobench.resolve import resolve_task


def test_base_inheritance_resolves_dataset_and_protocol():
    cfg = resolve_task("digits-knn", None)
    assert cfg["dataset"]["type"] == "digits"
    assert cfg["protocol"] == {"type": "knn", "nb_knn": [10, 20, 100, 200], "temperature": 0.07, "chunk_size": 1024,
                               "few_shot": {"n_per_class": [], "seeds": [0, 1, 2]}, "main_metric": "top1"}
    assert cfg["transform"]["resize"] == 64


def test_dotted_overrides_are_parsed_and_applied():
    cfg = resolve_task("digits-knn", ["protocol.temperature=0.1", "protocol.nb_knn=[1,3]", "backbone.depth=2"])
    assert cfg["protocol"]["temperature"] == 0.1
    assert cfg["protocol"]["nb_knn"] == [1, 3]
    assert cfg["backbone"] == {"depth": 2}


def test_unknown_key_is_rejected_naming_it():
    with pytest.raises(ConfigError, match="protocol.temprature"):
        resolve_task("digits-knn", ["protocol.temprature=0.1"])
    with pytest.raises(ConfigError, match="not key=value"):
        parse_options(["protocol.temperature"])


def test_protocol_hash_ignores_runtime_keys_only():
    from dinobench.resolve import runtime_keys

    cfg = {"protocol": {"type": "knn", "temperature": 0.07, "chunk_size": 8}, "features": {"batch_size": 4},
           "backbone": {}}
    keys = runtime_keys(cfg)  # declared by their owners: the features section and the knn protocol
    assert "protocol.chunk_size" in keys and "features.batch_size" in keys and "protocol.temperature" not in keys
    base = protocol_hash(cfg, "fp", keys)
    assert protocol_hash(apply_options(cfg, {"features.batch_size": 64, "protocol.chunk_size": 99}), "fp", keys) == base
    # a key no owner declares runtime is hashed
    assert protocol_hash(apply_options(cfg, {"protocol.chunk_size": 99}), "fp") != protocol_hash(cfg, "fp")
    assert protocol_hash(apply_options(cfg, {"protocol.temperature": 0.1}), "fp", keys) != base
    assert protocol_hash(cfg, "other-dataset", keys) != base
