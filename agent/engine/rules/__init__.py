"""flagd targeting rules (JSON Logic plus flagd's operators) compiled to Python closures.

``compile_rule`` walks a rule once, at load time, and returns ``fn(context) -> value``
(``compile_targeting`` also says whether the rule reads the clock);
evaluation never looks at rule JSON again. ``resolve_refs`` expands ``$evaluators``
references before that. ``RuleError`` carries the JSON path and the reason of a refusal.
"""

from .compiler import CompiledRule, compile_rule, compile_targeting
from .errors import RuleError
from .refs import resolve_refs

__all__ = ["CompiledRule", "RuleError", "compile_rule", "compile_targeting", "resolve_refs"]
