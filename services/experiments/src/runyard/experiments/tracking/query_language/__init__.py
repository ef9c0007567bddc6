"""The experiment search language: ``filter`` expressions and ``order_by``.

A filter is parsed by a LALR grammar (lark, ``syntax``) into a tree, and the tree is compiled into
a SQLAlchemy boolean expression (``compiler``) over the fields of ``fields``:

    status = 'completed' and metrics.val_accuracy >= 0.9
    (model_type in ('cnn1d', 'resnet') or tag = 'baseline') and not name like 'tmp-%'
    params.optimizer = 'adam' and created_at > '2026-01-01' and dataset_id is not null
"""

from runyard.experiments.tracking.query_language.compiler import compile_filter
from runyard.experiments.tracking.query_language.ordering import Ordering, parse_order_by
from runyard.experiments.tracking.query_language.syntax import QueryLanguageError

__all__ = ["Ordering", "QueryLanguageError", "compile_filter", "parse_order_by"]
