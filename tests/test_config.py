import pytest

from astradup.config import load_config


def test_env_overrides_nested_keys_and_parse_values():
    cfg = load_config(environ={"ASTRADUP_FUSION__VISUAL": "0.7", "ASTRADUP_MILVUS_URI": "http://127.0.0.1:19530",
                               "ASTRADUP_PIPELINE__DASHBOARD": "false"})
    assert cfg.fusion.visual == 0.7
    assert cfg.resolved_milvus_uri == "http://127.0.0.1:19530"
    assert cfg.pipeline.dashboard is False


def test_other_astradup_variables_are_not_config_keys():
    cfg = load_config(environ={"ASTRADUP_API_KEY": "secret", "ASTRADUP_MAX_UPLOAD_MB": "5"})
    assert cfg.fusion.visual == 0.65


def test_unknown_key_in_a_yaml_file_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("fusion:\n  visul: 0.7\n")
    with pytest.raises(ValueError, match="fusion.visul"):
        load_config(p, environ={})


def test_defaults_follow_the_product_card():
    cfg = load_config(environ={})
    f = cfg.fusion
    assert (f.visual, f.audio, f.metadata) == (0.65, 0.25, 0.10)
    assert (f.duplicate, f.near_duplicate, f.similar) == (0.95, 0.85, 0.70)
    assert cfg.embedder.kind == "sscd_onnx"
