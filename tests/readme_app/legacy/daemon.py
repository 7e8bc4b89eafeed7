import signal
import threading

stop = threading.Event()


def main():
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
