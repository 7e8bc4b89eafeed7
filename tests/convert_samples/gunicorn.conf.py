# A gunicorn.conf.py as its documentation's examples write one: settings are module variables,
# hooks are functions, and the file may compute values.
import multiprocessing
import os

wsgi_app = "convertapp:app"
bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WORKERS", multiprocessing.cpu_count() * 0 + 2))
threads = 2
timeout = 45
graceful_timeout = 20
keepalive = 5
max_requests = 1000
max_requests_jitter = 50
backlog = 512
preload_app = True
raw_env = ["GREETING=hello from gunicorn.conf.py"]
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s'
loglevel = "warning"
proc_name = "shop-web"
limit_request_line = 8190
forwarded_allow_ips = "127.0.0.1,10.0.0.0/8"
_private_helper = "not a setting"


def post_fork(server, worker):
    server.log.info("worker %s forked", worker.pid)


def when_ready(server):
    server.log.info("ready")
