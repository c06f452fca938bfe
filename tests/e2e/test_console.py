"""The operator console (issue 16) in a real browser: Debian's headless Chromium driven by
Selenium through Debian's chromedriver (no browser download). An operator signs in (a wrong
secret is refused with SignatureDoesNotMatch shown), creates a bucket, uploads a file, sees it
listed, downloads it byte-exact, sees a lifecycle rule, deletes the file and finds its record in
the destruction log, which verifies; switches versioning on and sees two versions; sees Object Lock
settings; loads the cluster and migrations pages; adds a user (secret shown once), signs out and
in as that user, who is refused the admin pages (AccessDenied). The key is held in the page's
memory only: no storage or cookie holds it, and a reload asks for it again. Screenshots of each step go to tests/e2e/artifacts/console/
(ignored by git; their paths are printed). Also: the console's static files carry their strict
headers, and `--no-console` turns them off."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import empty_bucket

pytestmark = pytest.mark.strata_only(reason="the console is Strata's own")

ARTIFACTS = Path(__file__).parent / "artifacts" / "console"
WAIT = 15  # seconds any one step may take in the browser


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_console_files_and_headers(server, make_server):
    status, h, body = _get(f"{server.endpoint}/_strata/console/")
    assert status == 200 and h["Content-Type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="app.js">' in body
    csp = h["Content-Security-Policy"]
    for part in ("default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"):
        assert part in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
    assert h["Cache-Control"] == "no-cache" and h["ETag"].startswith('"')
    status, h, body = _get(f"{server.endpoint}/_strata/console/app.js")
    assert status == 200 and h["Content-Type"] == "text/javascript; charset=utf-8" and len(body) < 64 * 1024
    assert _get(f"{server.endpoint}/_strata/console/secret.txt")[0] == 404
    # turned off: nothing is served there
    off = make_server(extra_args=["--no-console"])
    status, _, body = _get(f"{off.endpoint}/_strata/console/")
    assert status == 404 and b"--no-console" in body


def _driver(profile: str, downloads: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.fail("chromium and chromium-driver are needed (run scripts/setup.sh)", pytrace=False)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    opts = Options()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    d = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
    d.set_page_load_timeout(WAIT)
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return d


def test_console_in_a_real_browser(server, s3):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's screenshots only
    ARTIFACTS.mkdir(parents=True)
    profile = tempfile.mkdtemp(prefix="strata-console-profile-")
    downloads = tempfile.mkdtemp(prefix="strata-console-downloads-")
    bucket = f"console-{uuid.uuid4().hex[:12]}"
    name = "report 2026 ü.bin"  # a space and a non-ASCII letter: SigV4 path encoding
    data = os.urandom(300 * 1024)
    upload = Path(tempfile.mkdtemp(prefix="strata-console-upload-")) / name
    upload.write_bytes(data)
    shots: list[str] = []
    d = _driver(profile, downloads)
    wait = WebDriverWait(d, WAIT)

    def shot(step: str) -> None:
        p = ARTIFACTS / f"{len(shots) + 1:02d}-{step}.png"
        d.save_screenshot(str(p))
        shots.append(str(p))

    def find(css: str):
        return wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def text_in(css: str, text: str):
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
        return d.find_element(By.CSS_SELECTOR, css).text

    def refresh(css: str):
        """Clicks the console's Refresh button; the element `css` of the new rendering."""
        old = d.find_element(By.CSS_SELECTOR, css)
        d.find_element(By.CSS_SELECTOR, "#refresh").click()
        wait.until(EC.staleness_of(old))
        return find(css)

    def sign_in(secret: str, access_key: str = server.access_key) -> None:
        for field, value in (("#access-key", access_key), ("#secret-key", secret)):
            el = find(field)
            el.clear()
            el.send_keys(value)
        d.find_element(By.CSS_SELECTOR, "#signin-submit").click()

    try:
        started = time.monotonic()
        d.get(f"{server.endpoint}/_strata/console/")
        assert not d.find_element(By.CSS_SELECTOR, "#nav").is_displayed()  # nothing before sign-in
        # a wrong secret: refused, with S3's error code shown
        sign_in("not-the-secret-" + uuid.uuid4().hex)
        assert "SignatureDoesNotMatch" in text_in("#signin-error", "SignatureDoesNotMatch")
        shot("wrong-secret")
        sign_in(server.secret_key)
        find("#create-bucket")
        assert "(admin)" in d.find_element(By.CSS_SELECTOR, "#who").text
        # the key is kept in the page's memory only: no storage, no cookie; a reload forgets it
        assert d.execute_script("return localStorage.length + sessionStorage.length") == 0
        assert d.get_cookies() == []
        d.refresh()
        find("#signin")
        sign_in(server.secret_key)
        find("#create-bucket")

        # a bad bucket name: S3's error code and message are shown
        find("#new-bucket").send_keys("Bad_Name")
        d.find_element(By.CSS_SELECTOR, "#create-bucket button").click()
        assert "InvalidBucketName" in text_in("#error", "InvalidBucketName")
        # create a bucket
        el = d.find_element(By.CSS_SELECTOR, "#new-bucket")
        el.clear()
        el.send_keys(bucket)
        d.find_element(By.CSS_SELECTOR, "#create-bucket button").click()
        find(f'tr[data-bucket="{bucket}"]')
        s3.head_bucket(Bucket=bucket)
        shot("buckets")

        # upload a file, see it listed, download it byte-exact
        d.find_element(By.CSS_SELECTOR, f'tr[data-bucket="{bucket}"] a').click()
        find("#upload-file").send_keys(str(upload))
        d.find_element(By.CSS_SELECTOR, "#upload-submit").click()
        row = find(f'tr[data-key="{name}"]')
        assert "300.0 KiB" in row.text
        got = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        shot("objects")
        row.find_element(By.CSS_SELECTOR, "a.download").click()
        target = Path(downloads) / name
        deadline = time.monotonic() + WAIT
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert target.exists(), f"no download in {downloads}: {os.listdir(downloads)}"
        assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()

        # the bucket list shows the bucket's usage (the `usage` verb folds what is pending)
        d.get(f"{server.endpoint}/_strata/console/#/buckets")
        usage = text_in(f'tr[data-bucket="{bucket}"] td.num', "objects")
        assert usage == "300.0 KiB, 1 objects", usage
        shot("usage")
        d.get(f"{server.endpoint}/_strata/console/#/b/{bucket}")
        find(f'tr[data-key="{name}"]')

        # a lifecycle rule put with boto3 shows with its status and actions
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
            {"ID": "expire-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
             "Expiration": {"Days": 30}}]})
        d.find_element(By.CSS_SELECTOR, "#tab-lifecycle").click()
        rule = find('tr[data-rule="expire-logs"]')
        assert "Enabled" in rule.text and "prefix logs/" in rule.text
        assert "expire current after 30 days" in rule.text
        find("#lifecycle-status")
        shot("lifecycle")

        # delete the object in the browser (asks once more), then find its destruction record
        d.find_element(By.CSS_SELECTOR, "#tab-objects").click()
        button = find(f'tr[data-key="{name}"] button')
        button.click()
        assert button.text == "Confirm delete"
        button.click()
        text_in("#objects", "No objects here.")
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
        d.get(f"{server.endpoint}/_strata/console/#/destruction")
        records = find("#destruction-records")
        deadline = time.monotonic() + WAIT
        # the GC worker destroys it after the grace period (1 s in tests)
        while name not in records.text and time.monotonic() < deadline:
            time.sleep(0.5)
            records = refresh("#destruction-records")
        assert name in records.text and bucket in records.text, records.text
        d.find_element(By.CSS_SELECTOR, "#verify").click()
        assert "Verified:" in text_in("#verify-result", "Verified:")
        shot("destruction-log")

        # versions: switch versioning on in the browser, then two versions of one key show
        d.get(f"{server.endpoint}/_strata/console/#/b/{bucket}/versions")
        assert text_in("#versioning-status", "Unversioned") == "Unversioned"
        d.find_element(By.CSS_SELECTOR, "#versioning-toggle").click()
        assert text_in("#versioning-status", "Enabled") == "Enabled"
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        ids = [s3.put_object(Bucket=bucket, Key="v.txt", Body=body)["VersionId"] for body in (b"one", b"two")]
        versions = refresh("#versions")
        assert all(i in versions.text for i in ids) and "latest" in versions.text
        shot("versions")

        # Object Lock settings: none here; a bucket made with a default retention shows it
        d.find_element(By.CSS_SELECTOR, "#tab-lock").click()
        text_in("#object-lock", "not enabled")
        locked = f"console-lock-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        try:
            d.get(f"{server.endpoint}/_strata/console/#/b/{locked}/lock")
            assert "GOVERNANCE, 1 days" in text_in("#object-lock", "GOVERNANCE")
            shot("object-lock")
        finally:
            s3.delete_bucket(Bucket=locked)

        # the operator pages load with live data
        d.get(f"{server.endpoint}/_strata/console/#/cluster")
        assert text_in("#readiness", "ready") == "ready"
        assert len(find("#disks").find_elements(By.CSS_SELECTOR, "tbody tr")) == 6
        shot("cluster")
        d.get(f"{server.endpoint}/_strata/console/#/migrations")
        find("#migrations")
        d.get(f"{server.endpoint}/_strata/console/#/users")
        text_in("#users", server.access_key)
        # add a user in the browser: its secret is shown once
        user = f"console-{uuid.uuid4().hex[:8]}"
        find("#new-user").send_keys(user)
        d.find_element(By.CSS_SELECTOR, "#add-user button").click()
        shown = [e.text for e in find("#new-secret").find_elements(By.CSS_SELECTOR, "dd")]
        assert shown[0] == user and len(shown) == 3, shown
        text_in("#users", shown[1])
        shot("users")
        # sign out; the new user is no admin: the admin pages are refused
        d.find_element(By.CSS_SELECTOR, "#signout").click()
        find("#signin")
        sign_in(shown[2], access_key=shown[1])
        find("#create-bucket")
        assert "(admin)" not in d.find_element(By.CSS_SELECTOR, "#who").text
        assert not d.find_element(By.CSS_SELECTOR, 'a[href="#/users"]').is_displayed()
        d.get(f"{server.endpoint}/_strata/console/#/users")
        assert "AccessDenied" in text_in("#error", "AccessDenied")
        print(f"\nconsole flow took {time.monotonic() - started:.1f} s; screenshots:")
    except Exception:
        try:
            shot("failure")
        except Exception:
            pass
        raise
    finally:
        for s in shots:
            print("  " + s)
        d.quit()
        empty_bucket(s3, bucket)
        for p in (profile, downloads, str(upload.parent)):
            shutil.rmtree(p, ignore_errors=True)
