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


# ---------------------------------------------------------------------------------------------
# validation (issue 15 item 4): each bad value is one line naming key, value, origin, what is allowed

import dataclasses  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from astradup.config import Config, DecodeConfig, FusionConfig, check_decode, check_pipeline  # noqa: E402
from astradup.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _error(environ=None, path=None, overrides=None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides, environ={} if environ is None else environ)
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name,raw,line", [
    ("ASTRADUP_FUSION__VISUAL", "-3",
     "config: fusion.visual = -3 (ASTRADUP_FUSION__VISUAL): must be between 0 and 1"),
    ("ASTRADUP_SEARCH__CONSISTENCY", "Bogus",
     "config: search.consistency = 'Bogus' (ASTRADUP_SEARCH__CONSISTENCY): "
     "must be one of Strong, Session, Bounded, Eventually"),
    ("ASTRADUP_EMBEDDER__KIND", "nope",
     "config: embedder.kind = 'nope' (ASTRADUP_EMBEDDER__KIND): must be one of sscd_onnx, open_clip, hf_clip"),
    ("ASTRADUP_LOG__JSON", "maybe",
     "config: log.json = 'maybe' (ASTRADUP_LOG__JSON): must be true or false (also yes/no, on/off, 1/0)"),
    # a non-number: was a bare ValueError from float("abc") / int("ten")
    ("ASTRADUP_FUSION__VISUAL", "abc",
     "config: fusion.visual = 'abc' (ASTRADUP_FUSION__VISUAL): must be a number between 0 and 1"),
    ("ASTRADUP_SEARCH__TOP", "ten", "config: search.top = 'ten' (ASTRADUP_SEARCH__TOP): must be a whole number >= 1"),
    ("ASTRADUP_SEARCH__TOP", "2.5", "config: search.top = '2.5' (ASTRADUP_SEARCH__TOP): must be a whole number >= 1"),
    ("ASTRADUP_DECODE__FPS", "nan", "config: decode.fps = nan (ASTRADUP_DECODE__FPS): must be a number > 0"),
])
def test_a_bad_environment_value_is_one_line_naming_it(name, raw, line):
    assert _error({name: raw}) == line


def test_the_same_checks_apply_to_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("search:\n  consistency: Bogus\n")
    assert _error(path=p) == (f"config: search.consistency = 'Bogus' ({p}): "
                              "must be one of Strong, Session, Bounded, Eventually")
    assert _error(overrides={"log": {"json": "maybe"}}).startswith("config: log.json = 'maybe': must be true or false")
    # the layer that set the value is the one named: overrides come after the environment
    assert _error({"ASTRADUP_FUSION__VISUAL": "0.5"}, overrides={"fusion": {"visual": 7}}) \
        == "config: fusion.visual = 7: must be between 0 and 1"


@pytest.mark.parametrize("raw,value", [("true", True), ("FALSE", False), ("yes", True), ("no", False),
                                       ("on", True), ("Off", False), ("1", True), ("0", False)])
def test_booleans_take_the_usual_words_only(raw, value):
    assert load_config(environ={"ASTRADUP_LOG__JSON": raw}).log.json is value


@pytest.mark.parametrize("bad", ["maybe", "2", "y", "", "truee"])
def test_other_boolean_text_is_refused(bad):
    assert "must be true or false" in _error({"ASTRADUP_PIPELINE__DASHBOARD": bad})


def test_values_are_read_as_their_keys_type():
    cfg = load_config(environ={"ASTRADUP_MILVUS_TOKEN": "12345", "ASTRADUP_VECTORS__PHASH": "off",
                               "ASTRADUP_LOG__LEVEL": "debug", "ASTRADUP_FUSION__VISUAL": "1",
                               "ASTRADUP_CATALOG__REFRESH_S": "1e-1"})
    assert cfg.milvus_token == "12345" and cfg.vectors.phash == "off" and cfg.log.level == "DEBUG"
    assert cfg.fusion.visual == 1.0 and isinstance(cfg.fusion.visual, float) and cfg.catalog.refresh_s == 0.1


def test_yaml_spellings_keep_their_meaning(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("milvus_token: 1234\npipeline:\nvectors:\n  phash: off\n")  # bare off = YAML false
    cfg = load_config(p, environ={})
    assert cfg.milvus_token == "1234" and cfg.vectors.phash == "off" and cfg.pipeline.write_batch == 100
    p.write_text("embedder:\n  batch_size: 32.5\n")
    assert _error(path=p) == f"config: embedder.batch_size = 32.5 ({p}): must be a whole number >= 1"
    p.write_text("fusion: [1\n")
    assert _error(path=p).startswith(f"config: {p}: not valid YAML at line 2")
    assert _error(path=tmp_path / "missing.yaml") == f"config: {tmp_path / 'missing.yaml'}: no such file"


def test_unknown_keys_are_refused_everywhere(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("fusion:\n  visul: 0.7\n")
    assert _error(path=p) == f"config: fusion.visul = 0.7 ({p}): unknown key, did you mean fusion.visual?"
    p.write_text("colour: red\n")
    assert _error(path=p).startswith(f"config: colour = 'red' ({p}): unknown key; the top level has data_dir,")
    assert _error({"ASTRADUP_FUSION__VISUL": "0.7"}) \
        == "config: fusion.visul = 0.7 (ASTRADUP_FUSION__VISUL): unknown key, did you mean fusion.visual?"
    assert _error({"ASTRADUP_FUSON__VISUAL": "0.7"}) \
        == "config: fuson (ASTRADUP_FUSON__VISUAL): unknown key, did you mean fusion?"
    assert _error({"ASTRADUP_MILVUS_URL": "http://h:19530"}) \
        == "config: ASTRADUP_MILVUS_URL: unknown key, did you mean ASTRADUP_MILVUS_URI?"
    assert "ASTRADUP_<SECTION>__<KEY>" in _error({"ASTRADUP_FUSION__VISUAL__X": "1"})
    assert "unknown key" in _error(overrides={"search": {"topk": 3}})


def test_rules_across_keys_name_the_key_and_the_other_value():
    assert _error({"ASTRADUP_FUSION__SIMILAR": "0.9"}) \
        == "config: fusion.similar = 0.9 (ASTRADUP_FUSION__SIMILAR): must be <= near_duplicate (0.85)"
    assert _error({"ASTRADUP_SCORE__EMB_LO": "0.8"}) \
        == "config: score.emb_lo = 0.8 (ASTRADUP_SCORE__EMB_LO): must be below emb_hi (0.75)"
    assert _error(overrides={"segments": {"distinct_sure": 0.4}}) \
        == "config: segments.distinct_full = 0.45 (configs/default.yaml): must be below distinct_sure (0.4)"
    assert load_config(None, {"segments": {"distinct_sure": 0.4, "distinct_lift": 0}}).segments.distinct_lift == 0
    assert _error(overrides={"fusion": {"visual": 0, "audio": 0, "metadata": 0}}).startswith(
        "config: fusion.visual = 0.0: all three weights are 0")
    assert _error({"ASTRADUP_SEARCH__TOP_K": "100"}).startswith(
        "config: common.search_k = 64 (configs/default.yaml): must be >= common.min_videos (8) "
        "and >= search.top_k (100)")


def test_several_errors_stay_on_one_line():
    text = _error(overrides={"fusion": {"visual": -1, "audio": 2}, "decode": {"fps": 0}})
    assert text.count("; ") == 2 and "fusion.audio = 2" in text and "decode.fps = 0: must be > 0" in text


def test_sections_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match=r"^config: decode.decoder = 'PyAV': must be one of decord, pyav_fast$"):
        DecodeConfig(decoder="PyAV")
    with pytest.raises(ConfigError, match="fusion.visual = 2"):
        dataclasses.replace(FusionConfig(), visual=2.0)
    assert dataclasses.replace(FusionConfig(), visual=1.0).visual == 1.0
    d = DecodeConfig()
    d.max_fps = -1  # assignment is not checked: check_decode is, where the decoder starts
    with pytest.raises(ConfigError, match=r"decode.max_fps = -1: must be >= 0"):
        check_decode(d)
    cfg = load_config(environ={})
    cfg.embedder.pca_dims = 0  # scripts/fit_projection.py does this
    cfg.log.json = "maybe"
    with pytest.raises(ConfigError, match="log.json = 'maybe'"):
        check_pipeline(cfg)
    assert Config() == load_config(environ={})  # the model's defaults are configs/default.yaml's


def test_cli_prints_one_line_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRADUP_")}
    env.update(PYTHONPATH=str(ROOT), ASTRADUP_DATA_DIR=str(tmp_path))
    for name, raw, tail in (("ASTRADUP_FUSION__VISUAL", "-3", "fusion.visual = -3 (ASTRADUP_FUSION__VISUAL): "
                                                                "must be between 0 and 1"),
                            ("ASTRADUP_SEARCH__TOP", "ten", "search.top = 'ten' (ASTRADUP_SEARCH__TOP): "
                                                            "must be a whole number >= 1")):
        proc = subprocess.run([sys.executable, "-m", "astradup.cli", "stats"], cwd=tmp_path, env={**env, name: raw},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == f"astradup: error: config: {tail}\n" and proc.stdout == ""
    assert not any(tmp_path.iterdir())  # refused before anything was opened


@pytest.mark.parametrize("job", ["backfill", "dedup"])
def test_jobs_print_one_line_and_exit_2(job, monkeypatch, capsys, tmp_path):
    import importlib

    mod = importlib.import_module(f"jobs.{job}")
    monkeypatch.setenv("ASTRADUP_EMBEDDER__KIND", "nope")
    argv = ["--source", str(tmp_path)] if job == "backfill" else ["--data-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        mod.config_from_args(mod.parse_args(argv))
    assert exc.value.code == 2
    assert capsys.readouterr().err == (f"python -m jobs.{job}: error: config: embedder.kind = 'nope' "
                                       "(ASTRADUP_EMBEDDER__KIND): must be one of sscd_onnx, open_clip, hf_clip\n")


def test_serve_app_refuses_a_bad_config_as_one_click_error(monkeypatch, tmp_path):
    click = pytest.importorskip("click")
    import serve.app
    from serve.settings import AppArgs

    monkeypatch.setenv("ASTRADUP_SEARCH__CONSISTENCY", "Bogus")
    with pytest.raises(click.ClickException) as err:
        serve.app.build(AppArgs(data_dir=str(tmp_path)))  # what `serve run serve.app:build` calls
    assert err.value.exit_code == 2 and isinstance(err.value, ConfigError)
    assert err.value.message == ("config: search.consistency = 'Bogus' (ASTRADUP_SEARCH__CONSISTENCY): "
                                 "must be one of Strong, Session, Bounded, Eventually")


@pytest.mark.parametrize("value,words", [
    ([0.0, 1.0], "non-zero shifts, each once"),
    ([1.0, 1.0], "non-zero shifts, each once"),
    ([13.0], "must be <= 12"),
    (["up"], "must be a number"),
    ([0.1 * i for i in range(1, 26)], "at most 24"),
])
def test_query_pitch_shifts_are_checked(value, words):
    with pytest.raises(ConfigError, match=words):
        load_config(overrides={"audio": {"query_pitch": value}})
    assert load_config(overrides={"audio": {"query_pitch": []}}).audio.query_pitch == ()


@pytest.mark.parametrize("value", [0, 65, -1, "8", 2.5])
def test_shard_read_concurrency_is_bounded(value):
    """One search may not open an unbounded number of threads on a config's say."""
    with pytest.raises(ConfigError, match="read_concurrency"):
        load_config(overrides={"catalog": {"read_concurrency": value}})
    assert load_config(overrides={"catalog": {"read_concurrency": 64}}).catalog.read_concurrency == 64


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.9", float("nan"), None])
def test_merge_rows_is_a_similarity_level_in_zero_to_one(value):
    """vectors.merge_rows decides which query rows share one KNN search: a value outside [0, 1] or
    not a number is refused naming the key, not read as "merge everything" or "never"."""
    with pytest.raises(ConfigError, match="merge_rows"):
        load_config(overrides={"vectors": {"merge_rows": value}})
    assert load_config(overrides={"vectors": {"merge_rows": 1.0}}).vectors.merge_rows == 1.0


@pytest.mark.parametrize("key", ["audio_confirm_none", "audio_confirm_full"])
@pytest.mark.parametrize("value", [-0.1, 1.5, "abc", float("nan"), True])
def test_audio_confirm_rates_are_bit_error_shares_in_zero_to_one(key, value):
    """segments.audio_confirm_none / _full are Chromaprint bit error rates: a value outside [0, 1] or
    not a number is refused naming the key, not read as "confirm everything" or "never"."""
    with pytest.raises(ConfigError, match=key):
        load_config(overrides={"segments": {key: value}})
    assert getattr(load_config(overrides={"segments": {key: 0.2}}).segments, key) == 0.2


def test_the_repository_default_yaml_is_the_one_loaded():
    """configs/default.yaml (what users read and copy) is the package's default.yaml (what
    load_config reads): a copy drifts, as one did when a setting was added to it alone."""
    from pathlib import Path

    from astradup.config import DEFAULT_YAML

    repo = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    assert repo.resolve() == DEFAULT_YAML.resolve() or repo.read_bytes() == DEFAULT_YAML.read_bytes()
