"""The read-only MCP server (Streamable HTTP, JSON-RPC) on 127.0.0.1:POOLER_MCP_PORT, routed at `/mcp` by Envoy.

Started as `python -m mcp_server`. Tools are thin wrappers over `pooler.services.mcp_queries`; access is
checked per HTTP request by `auth.BearerGate` (operator token + instance gate + operator gate).
"""
