"""Attribute aggregation over several samples of one person (``aggregate_attributes``).

One result per attribute from all the samples of a request:

- age: the mean of the per-sample expected ages (each already an expectation over the 81 age
  classes, so the mean is the expectation under an equal mixture of the samples);
- gender: the mean of P(male); the aggregated gender is its argmax (male when > 0.5, female
  otherwise, the single-sample rule), so one confident sample can outweigh two hesitant ones,
  which a majority vote would not allow; ``gender_votes`` keeps the vote count for reference;
- emotions: the mean of the probability vectors, whose argmax is the predominant emotion.

The descriptor's aggregation (normalised mean) is :func:`inference.descriptor_format.aggregate`.
Samples without a value (attribute not estimated for them) are left out; an attribute with no
sample at all aggregates to None.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from inference.models.age_gender import BasicAttributes
from inference.models.emotions import EMOTIONS, Emotions


@dataclass
class AggregatedAttributes:
    basic_attributes: BasicAttributes | None
    emotions: Emotions | None
    gender_votes: dict[str, int] | None
    samples: int


def aggregate_basic(samples: Sequence[BasicAttributes | None]) -> tuple[BasicAttributes | None, dict[str, int] | None]:
    present = [s for s in samples if s is not None]
    if not present:
        return None, None
    p_male = float(np.mean([s.gender_score for s in present]))
    males = sum(s.gender for s in present)
    result = BasicAttributes(
        age=float(np.mean([s.age for s in present])),
        age_confidence=float(np.mean([s.age_confidence for s in present])),
        gender=int(p_male > 0.5),
        gender_score=p_male,
    )
    return result, {"male": males, "female": len(present) - males}


def aggregate_emotions(samples: Sequence[Emotions | None]) -> Emotions | None:
    present = [s for s in samples if s is not None]
    if not present:
        return None
    mean = np.mean([[s.probabilities[e] for e in EMOTIONS] for s in present], axis=0)
    return Emotions(dict(zip(EMOTIONS, map(float, mean))))


def aggregate_attributes(
    basic: Sequence[BasicAttributes | None] = (), emotions: Sequence[Emotions | None] = ()
) -> AggregatedAttributes:
    """Aggregate per-sample attributes (the two sequences list the same samples, or one is empty)."""
    if basic and emotions and len(basic) != len(emotions):
        raise ValueError(f"{len(basic)} basic-attribute samples but {len(emotions)} emotion samples")
    aggregated_basic, votes = aggregate_basic(basic)
    return AggregatedAttributes(aggregated_basic, aggregate_emotions(emotions), votes, max(len(basic), len(emotions)))
