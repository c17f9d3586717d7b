"""bench: the recipe layer of t2v-turbo-bench (CLI verbs, configs, run directories, reports)."""

__version__ = "0.1.0"
