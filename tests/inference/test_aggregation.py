"""Attribute aggregation over several photos of one person."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.aggregation import aggregate_attributes, aggregate_basic, aggregate_emotions
from inference.models.age_gender import BasicAttributes
from inference.models.emotions import EMOTIONS, Emotions


@pytest.fixture(scope="module")
def person_attributes(faces_dir, shape_predictor, dlib_reference):
    """Basic attributes and emotions of each photo of one LFW person (Colin Powell)."""
    from inference import registry

    ages = registry.get("basic_attributes")
    emotions = registry.get("emotions")
    basic, emo = [], []
    for path in sorted((faces_dir / "lfw" / "Colin_Powell").glob("*.jpg"))[:5]:
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        rect = min(dlib_reference["hog"](image, 1), key=lambda r: abs(r.center().x - w / 2) + abs(r.center().y - h / 2))
        box = (rect.left(), rect.top(), rect.width(), rect.height())
        basic.append(ages.estimate(image, shape_predictor.predict(image, box)[None])[0])
        emo.append(emotions.estimate(image, [box])[0])
    return basic, emo


def test_real_photos_aggregate_within_the_samples(person_attributes):
    basic, emo = person_attributes
    result = aggregate_attributes(basic, emo)
    assert result.samples == 5
    ages = [b.age for b in basic]
    assert min(ages) <= result.basic_attributes.age <= max(ages)
    assert result.basic_attributes.gender_label == "male"
    assert result.gender_votes["male"] >= 4
    total = sum(result.emotions.probabilities.values())
    assert total == pytest.approx(1.0, abs=1e-5)
    for e in EMOTIONS:
        values = [s.probabilities[e] for s in emo]
        assert min(values) - 1e-9 <= result.emotions.probabilities[e] <= max(values) + 1e-9


def test_gender_follows_mean_probability_not_votes():
    # two hesitant "male" samples and one confident "female" one: the mean probability decides
    samples = [BasicAttributes(30, 0.2, 1, 0.55), BasicAttributes(32, 0.2, 1, 0.52), BasicAttributes(31, 0.3, 0, 0.02)]
    result, votes = aggregate_basic(samples)
    assert votes == {"male": 2, "female": 1}
    assert result.gender == 0 and result.gender_score == pytest.approx((0.55 + 0.52 + 0.02) / 3)
    assert result.age == pytest.approx(31.0)


def test_missing_samples_are_left_out():
    happy = Emotions({e: (0.9 if e == "happiness" else 0.1 / 6) for e in EMOTIONS})
    sad = Emotions({e: (0.6 if e == "sadness" else 0.4 / 6) for e in EMOTIONS})
    mean = aggregate_emotions([happy, None, sad])
    assert mean.predominant == "happiness"
    assert mean.probabilities["sadness"] == pytest.approx((0.1 / 6 + 0.6) / 2)
    assert aggregate_emotions([None, None]) is None
    assert aggregate_basic([]) == (None, None)
    only_emotions = aggregate_attributes(emotions=[happy])
    assert only_emotions.basic_attributes is None and only_emotions.samples == 1
    with pytest.raises(ValueError):
        aggregate_attributes([BasicAttributes(30, 0.2, 1, 0.6)], [happy, sad])
