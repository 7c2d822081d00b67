import pytest

from astradup.config import FusionConfig
from astradup.match.fusion import confidence_of, effective_weights, fuse, label_for

CFG = FusionConfig()


@pytest.mark.parametrize("score,label", [
    (1.0, "duplicate"), (0.95, "duplicate"), (0.9499, "near-duplicate"), (0.85, "near-duplicate"),
    (0.8499, "similar"), (0.70, "similar"), (0.6999, "none"), (0.0, "none"),
])
def test_labels_at_thresholds(score, label):
    assert label_for(score, CFG) == label


def test_weighted_sum_with_all_modalities():
    f = fuse({"visual": 1.0, "audio": 0.6, "metadata": 0.5}, CFG)
    assert f.score == pytest.approx(0.65 * 1.0 + 0.25 * 0.6 + 0.10 * 0.5)
    assert f.weights == pytest.approx({"visual": 0.65, "audio": 0.25, "metadata": 0.10})
    assert f.notes == ()


def test_missing_audio_redistributes_weight_and_says_so():
    f = fuse({"visual": 0.9, "audio": None, "metadata": 1.0}, CFG)
    assert f.weights["visual"] == pytest.approx(0.65 / 0.75)
    assert f.weights["metadata"] == pytest.approx(0.10 / 0.75)
    assert f.score == pytest.approx((0.65 * 0.9 + 0.10 * 1.0) / 0.75)
    assert any("audio" in n for n in f.notes)


def test_confidence_high_when_modalities_agree_low_when_not():
    agree = fuse({"visual": 0.97, "audio": 0.96, "metadata": 1.0}, CFG)
    disagree = fuse({"visual": 1.0, "audio": 0.0, "metadata": 1.0}, CFG)
    assert agree.confidence > 0.95
    assert disagree.confidence < 0.3
    assert agree.label == "duplicate"
    # visual says copy, audio says not: a match that goes to review
    assert disagree.label in ("similar", "near-duplicate") and disagree.review


def test_confidence_bounds():
    w = {"visual": 0.5, "audio": 0.5}
    assert confidence_of({"visual": 1.0, "audio": 0.0}, w) == pytest.approx(0.0)
    assert confidence_of({"visual": 0.4, "audio": 0.4}, w) == pytest.approx(1.0)


def test_no_modality_is_an_error():
    with pytest.raises(ValueError):
        effective_weights({"visual": None, "audio": None, "metadata": None}, CFG)


def test_weights_come_from_config():
    cfg = FusionConfig(visual=1.0, audio=0.0, metadata=0.0)
    f = fuse({"visual": 0.8, "audio": 0.1, "metadata": 0.1}, cfg)
    assert f.score == pytest.approx(0.8) and f.label == "similar"


def test_labels_carry_their_rank_and_the_setting_of_their_floor():
    from astradup.config import FusionConfig
    from astradup.match.fusion import label_for
    from astradup.records import Label

    cfg = FusionConfig()
    assert [lab.rank for lab in Label] == [3, 2, 1, 0] and Label.NONE not in Label.reportable()
    for lab in Label.reportable():
        floor = getattr(cfg, lab.floor_setting)
        assert label_for(floor, cfg) is lab and label_for(floor - 1e-9, cfg) is not lab
    assert label_for(0.0, cfg) is Label.NONE and Label("near-duplicate") == "near-duplicate"
