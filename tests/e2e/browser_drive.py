#!/usr/bin/python3
"""Drives headless Chromium through a page as a person would, for the e2e
suites: opens URL in a profile (--user-data-dir) the suite keeps, runs the
steps in order, writes the final DOM to OUT and closes the browser cleanly,
so the profile keeps its cookies for the next run.

    browser_drive.py CHROMIUM PROFILE OUT URL STEP...

A step is "eval:JS" (run once in the page; a promise is awaited) or
"wait:JS" (run until it is truthy, at most 30 s; a page being replaced by a
navigation counts as not yet).  "@SECRET@" in a step is replaced by the
value of the environment variable BROWSER_SECRET as a JavaScript string, so
a token never appears in a process's arguments.

Talks the DevTools protocol over --remote-debugging-pipe (fds 3 and 4 of
the browser: NUL-terminated JSON messages), so nothing listens on a port.
Exits 1 with the reason on stderr when a step fails or times out.
"""
import json
import os
import select
import subprocess
import sys
import time

STEP_TIMEOUT_S = 30.0


class Browser:
    def __init__(self, chromium, profile, url):
        to_child_r, self.to_child_w = os.pipe()
        self.from_child_r, from_child_w = os.pipe()

        def child_fds():
            # The browser reads commands on fd 3 and answers on fd 4; via high
            # fds first, since a pipe may already sit at 3 or 4.
            os.dup2(to_child_r, 100)
            os.dup2(from_child_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self.proc = subprocess.Popen(
            [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
             '--no-first-run', '--disable-background-networking', '--disable-component-update',
             '--disable-sync', '--disable-default-apps', '--disable-extensions',
             '--remote-debugging-pipe', '--user-data-dir=' + profile, url],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(profile, 'drive.log'), 'ab'),
            close_fds=False, preexec_fn=child_fds)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b''
        self.next_id = 1
        self.session = None

    def send(self, method, params=None, session=True):
        msg = {'id': self.next_id, 'method': method, 'params': params or {}}
        if session and self.session is not None:
            msg['sessionId'] = self.session
        self.next_id += 1
        os.write(self.to_child_w, json.dumps(msg).encode() + b'\0')
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            while b'\0' not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError('no answer to ' + method)
                ready, _, _ = select.select([self.from_child_r], [], [], left)
                if ready:
                    chunk = os.read(self.from_child_r, 65536)
                    if not chunk:
                        raise RuntimeError('the browser exited')
                    self.buf += chunk
            raw, self.buf = self.buf.split(b'\0', 1)
            answer = json.loads(raw)
            if answer.get('id') == msg['id']:
                return answer

    def attach(self):
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            infos = self.send('Target.getTargets', session=False)['result']['targetInfos']
            pages = [t for t in infos if t['type'] == 'page']
            if pages:
                r = self.send('Target.attachToTarget',
                              {'targetId': pages[0]['targetId'], 'flatten': True}, session=False)
                self.session = r['result']['sessionId']
                return
            time.sleep(0.2)
        raise RuntimeError('no page to drive')

    def evaluate(self, js):
        """(ok, value): ok is False when the script threw or the page went away."""
        r = self.send('Runtime.evaluate',
                      {'expression': js, 'awaitPromise': True, 'returnByValue': True})
        res = r.get('result')
        if res is None or 'exceptionDetails' in res:
            return False, (r.get('error') or res.get('exceptionDetails', {})).__repr__()
        return True, res['result'].get('value')

    def close(self):
        try:
            self.send('Browser.close', session=False)
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    chromium, profile, out, url = sys.argv[1:5]
    secret = json.dumps(os.environ.get('BROWSER_SECRET', ''))
    b = Browser(chromium, profile, url)
    failed = None
    try:
        b.attach()
        for step in sys.argv[5:]:
            kind, _, js = step.partition(':')
            js = js.replace('@SECRET@', secret)
            if kind == 'eval':
                ok, value = b.evaluate(js)
                if not ok:
                    raise RuntimeError('step failed: %s: %s' % (step, value))
            elif kind == 'wait':
                deadline = time.monotonic() + STEP_TIMEOUT_S
                while True:
                    ok, value = b.evaluate(js)
                    if ok and value:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError('timed out waiting for: %s (last: %r)' % (js, value))
                    time.sleep(0.2)
            else:
                raise RuntimeError('unknown step ' + step)
        ok, dom = b.evaluate('document.documentElement.outerHTML')
        if not ok:
            raise RuntimeError('cannot read the DOM: %s' % dom)
        with open(out, 'w') as f:
            f.write(dom)
    except RuntimeError as e:
        failed = str(e)
    finally:
        b.close()
    if failed:
        sys.exit('browser_drive: ' + failed)


if __name__ == '__main__':
    main()
