"""Vigie analyst console: ``streamlit run dashboards/app.py`` (``vigie console`` does it).

Sign in here (or through single sign-on, when configured); the pages you may open are listed in
the sidebar. Each page checks your role again on the server, and so does each action. Failed
sign-ins lock the name out for a while, and every sign-in is audited (``common.sign_in``). A
signed, expiring session cookie keeps the sign-in across reloads (``users.Sessions``).
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
# Start building the lake's entity index (graph, profiles), the queue index and the overview's
# totals now, in the background, once per console process, so the first transfer an analyst
# opens, the first queue and the first overview do not wait for them.
entity_index.get()
common.queue_index()
common.lake_totals()


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
            st.session_state["write_cookie"] = True
            for key in ("session_ended", "signed_out"):
                st.session_state.pop(key, None)
            st.rerun()
        else:
            st.error(refused)
    elif st.session_state.get("session_ended"):
        st.warning(st.session_state["session_ended"])
    if common.sso_configured():
        st.button("Sign in with single sign-on", key="sso", on_click=st.login)
    if st.session_state.get("signed_out"):
        common.forget_cookie()
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
        if st.button("Sign out", key="sign_out"):
            common.sign_out(user)
            if common.sso_configured() and st.user.get("is_logged_in"):
                st.logout()  # the identity provider's session too
            st.rerun()
    if st.session_state.pop("write_cookie", False):
        common.keep_signed_in(user)
    st.navigation(pages).run()
