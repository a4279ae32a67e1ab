"""The leads' desk: `datashare desk`, a small web application for data-sharing leads.

Leads sign in, see the breaches that need attention, move them through their lifecycle,
read and send a month's notice to the force, and open the oversight pack, the agreement
pages and each delivery's Data Docs over HTTP. Analysts and engineers sign in as viewers
and read the same pages without the buttons.

Built on what the stack carries: Starlette (with uvicorn and Jinja2, which come with
dagster-webserver) for the application, its SessionMiddleware (itsdangerous) for signed
session cookies, argon2-cffi for password hashes, asgi-csrf for CSRF tokens and `limits`
for sign-in attempts. Everything it says comes from the warehouse's governance views and
the texts the register and notices already write, so it never shows a classified value.
"""
