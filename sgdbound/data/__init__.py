"""Problems with exact Bayes class probabilities, and small real datasets."""

from sgdbound.data._sample import Sample, make_generator
from sgdbound.data.mixture import GaussianMixture, LogisticTeacher, QuadraticMixture

__all__ = ["GaussianMixture", "LogisticTeacher", "QuadraticMixture", "Sample", "make_generator"]
