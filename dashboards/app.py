"""Vigie analyst console: ``streamlit run dashboards/app.py`` (``vigie console`` does it).

Sign in here; the pages you may open are listed in the sidebar. Each page checks your role again
on the server, and so does each action. Failed sign-ins lock the name out for a while, and every
sign-in is audited (``common.sign_in``).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` from anywhere

import streamlit as st  # noqa: E402

from dashboards import common, entity_index  # noqa: E402

PAGES = [  # file, title, roles
    ("pages/overview.py", "Overview", common.ALL),
    ("pages/review_queue.py", "Review queue", ("analyst", "lead", "admin")),
    ("pages/accounts.py", "Accounts", common.ALL),
    ("pages/rules_lists.py", "Rules and lists", common.ALL),
    ("pages/recovery_cases.py", "Recovery cases", ("analyst", "lead", "admin")),
    ("pages/models_quality.py", "Models & data quality", common.ALL),
    ("pages/sql_box.py", "SQL", ("lead", "data_scientist", "admin")),
    ("pages/audit_log.py", "Audit", ("lead", "admin")),
]

st.set_page_config(page_title="Vigie console", layout="wide")
# Start building the lake's entity index (graph, profiles) now, in the background, once per
# console process, so the first transfer an analyst opens does not wait for it.
entity_index.get()


def login() -> None:
    st.title("Vigie console")
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        user, refused = common.sign_in(username.strip(), password)
        if user:
            st.session_state["auth"] = user
            st.session_state.pop("session_ended", None)
            st.rerun()
        else:
            st.error(refused)
    elif st.session_state.get("session_ended"):
        st.warning(st.session_state["session_ended"])
    if not common.users_path().exists():
        st.info("No console users yet: run `vigie console-users`.")


user = common.current_user()
if not user:
    st.navigation([st.Page(login, title="Sign in")]).run()
else:
    here = Path(__file__).resolve().parent
    pages = [st.Page(str(here / f), title=t) for f, t, roles in PAGES if user["role"] in roles]
    with st.sidebar:
        st.text(f"{user['username']} ({user['role']})")
        if st.button("Sign out"):
            st.session_state.pop("auth", None)
            common.audit("signed_out", strict=False, actor=user["username"], role=user["role"])
            st.rerun()
    st.navigation(pages).run()
