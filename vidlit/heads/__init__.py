"""Task heads. Importing this package makes vidlit's heads resolvable by short name in YAML."""

from vidlit.heads.base import TaskHead
from vidlit.heads.moment_queries import ActionFormerHead

__all__ = ["ActionFormerHead", "TaskHead"]
