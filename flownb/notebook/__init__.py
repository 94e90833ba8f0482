"""The IPython layer: magics, cell steps, the live view, approvals and SQL.

Internal: users reach it through ``%load_ext flownb``; the CLI drives it
through :class:`flownb.notebook.session.Session`.
"""
