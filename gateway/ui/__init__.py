"""The admin UI at /admin/ui: server-rendered pages (Jinja2 templates) and a small vendored
script, no build step. A face: it reads the registry and the task service, and its browser side
talks to the gateway's own admin, A2A and MCP endpoints."""
