"""A Codex-CLI-sized `POST /responses` body (~40 KB JSON) for benchmarks.

Shaped like what Codex CLI 0.169.0 sends in HTTP mode (see docs/GATEWAY_SURFACE.md): model, stream:true,
input[] (developer instructions, environment context, the user turn), tools[] (shell, apply_patch, plan, view
image, MCP-like functions with JSON schemas), tool_choice, parallel_tool_calls, reasoning, store:false, include,
prompt_cache_key, text, client_metadata. The bulk of the real body is instructions and tool schemas, so that is
where the size comes from here too. Deterministic: the same body every run.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

TARGET_BYTES = 40_000
MODEL = "gpt-5.1-codex"

_GUIDANCE = (
    "You are Codex, a coding agent running in a terminal. Follow the user's instructions precisely, prefer small "
    "reviewable changes, run the project's tests before you finish, never print secrets, and explain what you "
    "changed in a short summary. When a command needs approval, ask once with the exact command line. "
)


def _schema(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": desc} for name, desc in fields.items()},
        "required": list(fields)[:1],
        "additionalProperties": False,
    }


def _tools(count: int) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "name": "shell",
            "description": "Runs a shell command and returns its output. " + _GUIDANCE,
            "strict": False,
            "parameters": _schema(
                {
                    "command": "The command and its arguments, as an array of strings.",
                    "workdir": "The working directory to execute the command in.",
                    "timeout_ms": "The timeout for the command in milliseconds.",
                    "justification": "Why the command needs escalated permissions, shown to the user.",
                }
            ),
        },
        {"type": "custom", "name": "apply_patch", "description": "Edit files with a patch. " + _GUIDANCE * 3},
        {
            "type": "function",
            "name": "update_plan",
            "description": "Updates the task plan shown to the user.",
            "strict": False,
            "parameters": _schema({"explanation": "Why the plan changed.", "plan": "The list of steps."}),
        },
        {"type": "web_search", "external_web_access": False},
    ]
    for i in range(count):
        tools.append(
            {
                "type": "function",
                "name": f"mcp__workspace__tool_{i:02d}",
                "description": f"Workspace helper {i}: " + _GUIDANCE,
                "strict": False,
                "parameters": _schema({f"arg_{j}": f"Argument {j} of helper {i}. " + _GUIDANCE[:80] for j in range(4)}),
            }
        )
    return tools


def codex_body(target_bytes: int = TARGET_BYTES, session: str | None = None, prompt: str = "Say hello.") -> bytes:
    """Returns the JSON body, padded with more tools until it is at least `target_bytes` long."""
    session = session or str(uuid.UUID(int=0x5EED))
    instructions = "<permissions instructions>\n" + _GUIDANCE * 24 + "\n</permissions instructions>"
    environment = (
        "<environment_context>\n  <cwd>/home/dev/project</cwd>\n  <approval_policy>on-request</approval_policy>\n"
        "  <sandbox_mode>workspace-write</sandbox_mode>\n  <network_access>restricted</network_access>\n"
        "  <shell>bash</shell>\n</environment_context>"
    )
    extra_tools = 0
    while True:
        body: dict[str, Any] = {
            "model": MODEL,
            "instructions": _GUIDANCE * 8,
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": instructions}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": environment}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]},
            ],
            "tools": _tools(extra_tools),
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "reasoning": {"effort": "medium", "summary": "auto"},
            "store": False,
            "stream": True,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": session,
            "text": {"verbosity": "medium"},
            "client_metadata": {"originator": "codex_exec", "client_version": "0.169.0"},
        }
        raw = json.dumps(body, separators=(",", ":")).encode()
        if len(raw) >= target_bytes:
            return raw
        extra_tools += 1


if __name__ == "__main__":
    data = codex_body()
    print(f"{len(data)} bytes; keys: {', '.join(json.loads(data))}")
