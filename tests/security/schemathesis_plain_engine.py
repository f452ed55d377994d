"""Schemathesis hook (``SCHEMATHESIS_HOOKS``): the document as a server on plain engines keeps it.

``placement`` and ``resources`` are swarm's (``BOT_RUNTIME=swarm``); a server on plain engines
refuses them whatever their form (422 naming the field), which the one document, written for
both runtimes, cannot say. The fuzzer is told so here: on this server the list must be empty
and the resources ask for nothing. Their forms are held to the document by
``tests/api/test_patterns.py``, and swarm's answers by ``tests/runtime/test_swarm_bots.py``.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    fields = raw_schema["components"]["schemas"]["BotCreate"]["properties"]
    fields["placement"]["maxItems"] = 0
    # Absent, or an object that asks for nothing (each of its fields null or left out).
    asked = raw_schema["components"]["schemas"]["ResourcesIn"]["properties"]
    nothing = {
        "type": "object",
        "properties": {name: {"type": "null"} for name in asked},
        "additionalProperties": False,
    }
    fields["resources"] = {"anyOf": [{"type": "null"}, nothing]}
