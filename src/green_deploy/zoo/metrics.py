"""Task metrics of model outputs (numpy), identical for both frameworks, computed by maintained
libraries (scikit-learn, and PyTorch's cross-entropy) rather than by hand.

A task's outputs are first reduced to per-item **evidence** (an example's class scores and label,
a query's similarity to every document and its answer, a byte window's predicted bytes and
negative log-likelihoods). A ``Metric`` is a function of the evidence of any set of items, so the
same evidence gives the metric on the whole split, on a bootstrap resample and so its confidence
interval (``green_deploy.evaluate.accuracy``); each metric says which interval fits it.

**Ties in retrieval count against the model**: a document scored equal to the answer ranks above
it, scikit-learn's rule in ``label_ranking_average_precision_score``. Apart from exact ties
this is the rank the zoo has always used (1 + the documents scored strictly higher); with ties,
a model whose embeddings collapse now scores 1/documents instead of a perfect 1.

**No exact match**: no task here generates text (language modeling predicts the next byte and is
scored by next-byte accuracy, bits per byte and perplexity), so there is nothing to match.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

import numpy as np

from green_deploy.errors import ConfigError


def subset_indices(
    n_items: int, max_items: int | None, seed: int, labels: np.ndarray | None = None
) -> np.ndarray:
    """Sorted indices of at most ``max_items`` of ``n_items`` (all of them when ``max_items`` is
    ``None`` or not smaller), drawn with ``seed``; with one label per item, each class keeps
    its share of the split (largest remainders get the items left over)."""
    if max_items is None or n_items <= max_items:
        return np.arange(n_items)
    rng = np.random.default_rng(seed)
    if labels is None or np.ndim(labels) != 1 or len(labels) != n_items:
        return np.sort(rng.choice(n_items, max_items, replace=False))
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * max_items / n_items
    take = np.floor(quota).astype(int)
    leftover = max_items - int(take.sum())
    take[np.argsort(take - quota, kind="stable")[:leftover]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == label), count, replace=False)
        for label, count in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class Evidence:
    """Per-item arrays, items on the first axis, from which one task's metrics are computed."""

    task: ClassVar[str]

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def take(self, index: np.ndarray) -> Self:
        """The evidence of the items at ``index`` (a bootstrap resample repeats some)."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concatenate(cls, parts: Sequence[Self]) -> Self:
        """The evidence of chunks of items scored one after the other, as one."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


@dataclass(frozen=True)
class ClassificationEvidence(Evidence):
    """Per example: the model's score for every class (its logits) and the true class."""

    task: ClassVar[str] = "classification"
    logits: np.ndarray  # (examples, classes)
    labels: np.ndarray  # (examples,) class indices

    @cached_property
    def predicted(self) -> np.ndarray:
        return np.argmax(self.logits, axis=-1)

    @property
    def classes(self) -> np.ndarray:
        """Every class the model can predict, so a class absent from the items still counts."""
        return np.arange(self.logits.shape[-1])


@dataclass(frozen=True)
class RetrievalEvidence(Evidence):
    """Per query: its cosine similarity to every document and the index of its answer."""

    task: ClassVar[str] = "retrieval"
    similarity: np.ndarray  # (queries, documents)
    answers: np.ndarray  # (queries,) document indices

    @classmethod
    def from_embeddings(
        cls, queries: np.ndarray, documents: np.ndarray, answers: np.ndarray | None = None
    ) -> RetrievalEvidence:
        """Query i's answer is document ``answers[i]`` (by default document i)."""
        from sklearn.metrics.pairwise import cosine_similarity

        answer_index = np.arange(len(queries)) if answers is None else np.asarray(answers)
        return cls(cosine_similarity(queries, documents), answer_index)

    @cached_property
    def ranks(self) -> np.ndarray:
        """The 1-based rank of each query's answer: the documents scored at least as high as it
        (itself included), the rank scikit-learn's label ranking takes (see the module
        docstring). Counted, not sorted: SciPy's ``rankdata`` took seconds on 2,000 x 3,000."""
        answer_similarity = self.similarity[np.arange(len(self.answers)), self.answers]
        return np.sum(self.similarity >= answer_similarity[:, np.newaxis], axis=1)

    def relevant(self) -> Any:
        """One-hot answers (a sparse queries x documents indicator), as scikit-learn takes them."""
        from scipy.sparse import csr_array

        ones = np.ones(len(self.answers), dtype=np.int8)
        return csr_array((ones, (np.arange(len(self.answers)), self.answers)), shape=self.similarity.shape)


@dataclass(frozen=True)
class LanguageModelEvidence(Evidence):
    """Per byte window, at each position: the true next byte, the predicted (arg-max) byte and
    the true byte's negative log-likelihood in nats."""

    task: ClassVar[str] = "language_modeling"
    targets: np.ndarray  # (windows, positions)
    predicted: np.ndarray  # (windows, positions)
    nll_nats: np.ndarray  # (windows, positions)

    @classmethod
    def from_logits(cls, logits: np.ndarray, targets: np.ndarray) -> LanguageModelEvidence:
        """From logits over the 256 byte values (windows x positions x 256; one window may come
        without its first axis). Cross-entropy in float64, as PyTorch computes it."""
        import torch

        shape = targets.shape if targets.ndim > 1 else (1, -1)
        flat = np.asarray(logits, dtype=np.float64).reshape(-1, logits.shape[-1])
        nll = torch.nn.functional.cross_entropy(
            torch.from_numpy(flat), torch.from_numpy(targets.reshape(-1).astype(np.int64)), reduction="none"
        )
        return cls(targets.reshape(shape), flat.argmax(axis=1).reshape(shape), nll.numpy().reshape(shape))

    def window_nll_nats(self) -> np.ndarray:
        return self.nll_nats.mean(axis=1)


E = TypeVar("E", bound=Evidence)

IntervalRule = Literal["wilson", "mean", "resample"]


@dataclass(frozen=True)
class Metric(Generic[E]):
    """A task metric and how its confidence interval is found (``evaluate.accuracy``):

    - ``wilson``: ``value`` is a share of the items (Wilson's score interval);
    - ``mean``: ``value`` is ``of_mean`` (monotone increasing; identity when ``None``) of the mean
      of ``item_scores``, so its interval is that mean's, mapped;
    - ``resample``: neither (macro-F1): ``value`` is computed again on bootstrap resamples.
    """

    value: Callable[[E], float]
    interval: IntervalRule
    item_scores: Callable[[E], np.ndarray] | None = None
    of_mean: Callable[[float], float] | None = None
    higher_is_better: bool = True
    # ``value`` of many resamples at once (rows of item indices), where one library call can
    # do them all; by default ``value`` is called once per resample
    value_of_resamples: Callable[[E, np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        if (self.interval == "mean") != (self.item_scores is not None):
            raise ValueError("a metric has item scores exactly when its interval is the mean's")

    def on_resamples(self, evidence: E, index: np.ndarray) -> np.ndarray:
        """The metric on each resample of the items, one per row of ``index``."""
        if self.value_of_resamples is not None:
            return self.value_of_resamples(evidence, index)
        return np.array([self.value(evidence.take(row)) for row in index])


def _accuracy(e: ClassificationEvidence) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(e.labels, e.predicted))


def _macro_f1(e: ClassificationEvidence) -> float:
    """Every class weighs the same, a class never predicted nor present scoring 0."""
    from sklearn.metrics import f1_score

    return float(f1_score(e.labels, e.predicted, labels=e.classes, average="macro", zero_division=0))


def _macro_f1_of_resamples(e: ClassificationEvidence, index: np.ndarray) -> np.ndarray:
    """Macro-F1 of each row of ``index`` in one ``f1_score`` call (a thousand calls take
    seconds): resample r's classes become labels r x classes ... (r + 1) x classes - 1 of one
    sparse multilabel problem with a row per drawn item, so each label's F1 is one class's F1 in
    one resample."""
    from scipy.sparse import csr_array
    from sklearn.metrics import f1_score

    n_resamples, n_classes = len(index), len(e.classes)
    columns = (np.arange(n_resamples) * n_classes)[:, np.newaxis]
    rows, ones = np.arange(index.size), np.ones(index.size, dtype=np.int8)
    shape = (index.size, n_resamples * n_classes)
    truth = csr_array((ones, (rows, (columns + e.labels[index]).ravel())), shape=shape)
    predicted = csr_array((ones, (rows, (columns + e.predicted[index]).ravel())), shape=shape)
    per_class = f1_score(truth, predicted, average=None, zero_division=0)
    return np.asarray(per_class).reshape(n_resamples, n_classes).mean(axis=1)


def _top5_accuracy(e: ClassificationEvidence) -> float:
    """Of five classes or fewer, every label is among the top five: 1 (scikit-learn would say so
    in a warning on every call, and refuses a two-class model's two scores)."""
    from sklearn.metrics import top_k_accuracy_score

    if len(e.classes) <= 5:
        return 1.0
    return float(top_k_accuracy_score(e.labels, e.logits, k=5, labels=e.classes))


def _mrr(e: RetrievalEvidence) -> float:
    """With one relevant document per query, label ranking average precision is the mean
    reciprocal rank."""
    from sklearn.metrics import label_ranking_average_precision_score

    return float(label_ranking_average_precision_score(e.relevant(), e.similarity))


def _next_byte_accuracy(e: LanguageModelEvidence) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(e.targets.reshape(-1), e.predicted.reshape(-1)))


BITS_PER_NAT = 1 / math.log(2)


# Every window has the same number of positions, so the mean over windows of their means is the
# mean over all positions: the per-window scores give the interval of the whole split's figure.
METRICS: dict[str, dict[str, Metric[Any]]] = {
    "classification": {
        "accuracy": Metric(_accuracy, "wilson"),
        "macro_f1": Metric(_macro_f1, "resample", value_of_resamples=_macro_f1_of_resamples),
        "top5_accuracy": Metric(_top5_accuracy, "wilson"),
    },
    "retrieval": {
        "top1": Metric(lambda e: float(np.mean(e.ranks == 1)), "wilson"),
        "mrr": Metric(_mrr, "mean", item_scores=lambda e: 1.0 / e.ranks),
    },
    "language_modeling": {
        "next_byte_accuracy": Metric(
            _next_byte_accuracy, "mean", item_scores=lambda e: (e.predicted == e.targets).mean(axis=1)
        ),
        "bits_per_byte": Metric(
            lambda e: BITS_PER_NAT * float(e.nll_nats.mean()),
            "mean",
            item_scores=lambda e: BITS_PER_NAT * e.window_nll_nats(),
            higher_is_better=False,
        ),
        # per-byte perplexity, exp of the mean negative log-likelihood: 2 ** bits_per_byte
        "perplexity": Metric(
            lambda e: math.exp(float(e.nll_nats.mean())),
            "mean",
            item_scores=lambda e: e.window_nll_nats(),
            of_mean=math.exp,
            higher_is_better=False,
        ),
    },
}


def task_metrics(task: str) -> Mapping[str, Metric[Any]]:
    """The metrics a task is scored by, by name."""
    if task not in METRICS:
        raise ConfigError(f"task must be one of {sorted(METRICS)}, got {task!r}")
    return METRICS[task]


def metric_values(evidence: Evidence) -> dict[str, float]:
    """Every metric of the evidence's task on all its items."""
    return {name: metric.value(evidence) for name, metric in task_metrics(evidence.task).items()}


def better_sign(metric: str) -> float:
    """+1 where a higher value of ``metric`` is better, -1 where a lower one is (bits per byte,
    perplexity): a metric times its sign is better higher, as fronts and constraints compare it."""
    for metrics in METRICS.values():
        if metric in metrics:
            return 1.0 if metrics[metric].higher_is_better else -1.0
    known = sorted(name for metrics in METRICS.values() for name in metrics)
    raise ConfigError(f"unknown metric {metric!r}; known: {', '.join(known)}")
