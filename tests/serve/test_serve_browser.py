#!/usr/bin/env python3
"""Headless-browser test of pneumonia-serve's web page (examples/pneumonia/web/index.html).

    python3 tests/serve/test_serve_browser.py --url http://127.0.0.1:PORT --image FILE \
        [--screenshot OUT.png] [--timeout 30]

Drives Debian's chromium + chromium-driver through python3-selenium (headless, no sandbox so it
runs as root in containers):
  1. loads the page and waits for /api/health's model name to be shown;
  2. sends FILE (PNG or JPEG) to #file, clicks #analyse (unless the page already analyses on
     choose), waits for #label to read NORMAL or PNEUMONIA;
  3. checks #probability is a number in [0, 1], #probability-bar is shown, the #heatmap <img> has
     loaded and its natural size equals FILE's size (read from the PNG IHDR / JPEG SOF header);
  4. checks the browser console has no SEVERE message; saves the screenshot (--screenshot);
  5. when FILE is an 8-bit gray PNG: uploads a DICOM file holding its pixels (written here, with a
     patient name) and checks the label and probability equal the PNG's, the heatmap loads, and the
     patient's name appears nowhere on the page;
  6. uploads a white image and checks the page says plainly that it is not a chest X-ray
     (#refused with #refused-reason shown), with no label, probability or heatmap;
  7. uploads a file of random bytes named broken.png and checks #error shows a message and no
     label is shown.
Exit status: 0 pass, 1 fail (the reason is printed), 77 skipped (selenium, chromium or
chromedriver missing).
"""
import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request

SKIP = 77

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_serve_api as api  # noqa: E402 - its PNG and DICOM writers
CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
CHROMEDRIVER_CANDIDATES = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]


def import_selenium():
    """Returns the selenium webdriver module, or None. Debian's python3-selenium lives in the
    system interpreter; when another python3 (pyenv, venv) runs this file without it, re-run
    under /usr/bin/python3."""
    try:
        from selenium import webdriver  # noqa: F401
        return webdriver
    except ImportError:
        system = "/usr/bin/python3"
        if (os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system)
                and not os.environ.get("NN_BROWSER_TEST_REEXEC")):
            os.environ["NN_BROWSER_TEST_REEXEC"] = "1"
            os.execv(system, [system] + sys.argv)
        return None


def image_size(path):
    """(width, height) of a PNG (IHDR) or JPEG (first SOFn marker) file, without PIL."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if data[12:16] != b"IHDR":
            raise ValueError(f"{path}: PNG without IHDR first")
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data):
            if data[i] != 0xFF:
                raise ValueError(f"{path}: bad JPEG marker at byte {i}")
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7):  # no length
                i += 2
                continue
            (length,) = struct.unpack(">H", data[i + 2:i + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + length
        raise ValueError(f"{path}: JPEG without an SOF marker")
    raise ValueError(f"{path}: neither PNG nor JPEG")


class Failure(Exception):
    pass


def find_binary(candidates, name):
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which(name)


def severe_logs(driver, ignore_http_errors=False):
    """SEVERE browser-console entries (an empty list when the driver cannot read the log).
    With ignore_http_errors, Chromium's own "Failed to load resource: ... status of 4xx/5xx"
    lines (the page asked for them on purpose) are left out."""
    try:
        entries = driver.get_log("browser")
    except Exception:
        return []
    out = []
    for e in entries:
        if e.get("level") != "SEVERE":
            continue
        msg = e.get("message", "")
        if ignore_http_errors and "Failed to load resource" in msg and "status of" in msg:
            continue
        out.append(msg)
    return out


def wait_for(predicate, timeout, what, poll=0.1):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")


def js_text(driver, element_id):
    return driver.execute_script(
        "var e = document.getElementById(arguments[0]); return e ? e.textContent.trim() : null;", element_id)


def js_visible(driver, element_id):
    return driver.execute_script(
        "var e = document.getElementById(arguments[0]);"
        "if (!e) return false; var r = e.getBoundingClientRect();"
        "return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden';", element_id)


def save_screenshot(driver, path):
    """The whole page, 1280 px wide, as tall as its content (Chromium's DevTools protocol); the
    visible window when that is not available."""
    try:
        import base64
        size = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight];")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return
    except Exception as e:  # not Chromium, or an older protocol
        print(f"full-page screenshot unavailable ({type(e).__name__}); saving the window")
    if not driver.save_screenshot(path):
        raise Failure(f"cannot write the screenshot {path}")


def upload(driver, By, path, timeout):
    """Gives PATH to #file, then clicks #analyse when the page waits for it (a page that
    analyses on choose may already be busy: then there is nothing to click)."""
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(path))
    button = driver.find_element(By.ID, "analyse")
    end = time.time() + min(timeout, 5)
    while time.time() < end:
        if button.is_enabled():
            button.click()
            return
        if js_text(driver, "label") in ("NORMAL", "PNEUMONIA") or js_visible(driver, "error"):
            return
        time.sleep(0.1)
    # Never enabled: assume the page analysed on choose; the caller's wait decides.


def run(args, webdriver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.chrome.service import Service

    width, height = image_size(args.image)
    print(f"image {args.image}: {width} x {height}")
    try:  # a clear message for a server that is not there, before starting a browser
        with urllib.request.urlopen(args.url.rstrip("/") + "/api/health", timeout=10) as r:
            r.read()
    except (OSError, urllib.error.URLError) as e:
        raise Failure(f"{args.url}/api/health does not answer: {e}")

    chromium = find_binary(CHROMIUM_CANDIDATES, "chromium")
    chromedriver = find_binary(CHROMEDRIVER_CANDIDATES, "chromedriver")
    if not chromium or not chromedriver:
        print(f"SKIP: chromium ({chromium}) or chromedriver ({chromedriver}) not found "
              "(Debian: apt-get install chromium chromium-driver)")
        return SKIP

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        driver.set_window_size(1280, 900)
        driver.set_page_load_timeout(args.timeout)
        driver.get(args.url.rstrip("/") + "/")

        for element_id in ("file", "analyse", "label", "probability", "probability-bar", "heatmap", "error"):
            if not driver.find_elements(By.ID, element_id):
                raise Failure(f"the page has no #{element_id}")

        # /api/health answered and the page shows the model's name.
        model = wait_for(lambda: (js_text(driver, "model-name") or "—") not in ("—", "") and js_text(driver, "model-name"),
                         10, "the model name from /api/health")
        print(f"health: model {model}, threshold {js_text(driver, 'model-threshold')}")
        with urllib.request.urlopen(args.url.rstrip("/") + "/api/health", timeout=10) as r:
            has_card = json.loads(r.read()).get("model_card") is True
        if has_card and not wait_for(lambda: js_visible(driver, "model-card"), 5, "the model card link"):
            raise Failure("the server has a model card but the page shows no link to it")
        if has_card:
            href = driver.execute_script("return document.getElementById('model-card').href;")
            with urllib.request.urlopen(href, timeout=10) as r:
                if not r.read().startswith(b"# Model card"):
                    raise Failure(f"the model card link {href} does not give the card")
            print(f"model card linked: {href}")

        # ---- a real image -------------------------------------------------------------
        t0 = time.time()
        upload(driver, By, args.image, args.timeout)

        def done():
            if js_visible(driver, "error"):
                raise Failure(f"the page shows an error for {args.image}: {js_text(driver, 'error')!r}")
            label = js_text(driver, "label")
            return label if label in ("NORMAL", "PNEUMONIA") and js_visible(driver, "label") else None

        label = wait_for(done, args.timeout, "#label to read NORMAL or PNEUMONIA")
        print(f"label {label} after {time.time() - t0:.2f} s")

        text = js_text(driver, "probability")
        try:
            probability = float(text)
        except (TypeError, ValueError):
            raise Failure(f"#probability is not a number: {text!r}")
        if not 0.0 <= probability <= 1.0:
            raise Failure(f"#probability {probability} is outside [0, 1]")
        if not js_visible(driver, "probability-bar"):
            raise Failure("#probability-bar is not shown")
        print(f"probability {probability}")

        natural = wait_for(lambda: driver.execute_script(
            "var i = document.getElementById('heatmap');"
            "return i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null;"),
            10, "#heatmap to load (naturalWidth > 0)")
        if tuple(natural) != (width, height):
            raise Failure(f"#heatmap is {natural[0]} x {natural[1]}, the upload {width} x {height}")
        if not js_visible(driver, "heatmap"):
            raise Failure("#heatmap is not shown")
        print(f"heatmap {natural[0]} x {natural[1]}")

        severe = severe_logs(driver)
        if severe:
            raise Failure("browser console errors:\n  " + "\n  ".join(severe))

        if args.screenshot:
            driver.execute_script("window.scrollTo(0, 0);")
            time.sleep(0.6)  # the probability bar's width transition
            save_screenshot(driver, args.screenshot)
            print(f"screenshot {args.screenshot}")

        # ---- the same pixels as DICOM ------------------------------------------------------
        with tempfile.TemporaryDirectory(prefix="nn_browser_") as tmp:
            with open(args.image, "rb") as f:
                data = f.read()
            gray = None
            try:
                gray = api.png_decode_gray(data) if data[:8] == b"\x89PNG\r\n\x1a\n" else None
            except Exception:  # noqa: BLE001 - not an 8-bit gray PNG: no DICOM step
                gray = None
            if gray is not None:
                w, h, rows = gray
                dcm = os.path.join(tmp, "xray.dcm")
                with open(dcm, "wb") as f:
                    f.write(api.dicom_encode_gray(w, h, rows, patient="Doe^Jane"))
                driver.execute_script("document.getElementById('label').textContent = '';")
                upload(driver, By, dcm, args.timeout)
                dlabel = wait_for(done, args.timeout, "#label for the DICOM upload")
                dprob = float(js_text(driver, "probability"))
                if dlabel != label or dprob != probability:
                    raise Failure(f"DICOM: {dlabel} {dprob}, the PNG: {label} {probability}")
                natural = wait_for(lambda: driver.execute_script(
                    "var i = document.getElementById('heatmap');"
                    "return i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null;"),
                    10, "#heatmap to load for the DICOM upload")
                if tuple(natural) != (width, height):
                    raise Failure(f"DICOM: #heatmap is {natural[0]} x {natural[1]}, the image {width} x {height}")
                if "Doe" in driver.find_element(By.TAG_NAME, "body").text:
                    raise Failure("the patient's name from the DICOM header is on the page")
                print(f"DICOM: label {dlabel}, probability {dprob} (the PNG's)")
            else:
                print("DICOM step skipped: the image is not an 8-bit gray PNG")

            # ---- not a chest X-ray -------------------------------------------------------------
            white = os.path.join(tmp, "white.png")
            with open(white, "wb") as f:
                f.write(api.png_encode_gray(64, 64, [[255] * 64 for _ in range(64)]))
            upload(driver, By, white, args.timeout)
            reason = wait_for(lambda: js_visible(driver, "refused") and js_text(driver, "refused-reason"),
                              args.timeout, "#refused to show for a white image")
            if js_visible(driver, "label") and js_text(driver, "label") in ("NORMAL", "PNEUMONIA"):
                raise Failure("a label is shown for a refused image")
            if js_visible(driver, "heatmap") or js_visible(driver, "probability-bar"):
                raise Failure("a heatmap or probability is shown for a refused image")
            if "chest X-ray" not in js_text(driver, "refused"):
                raise Failure(f"#refused does not say the image is not a chest X-ray: {js_text(driver, 'refused')!r}")
            print(f"white image: refused ({reason!r})")

        # ---- a broken file ----------------------------------------------------------------
        with tempfile.TemporaryDirectory(prefix="nn_browser_") as tmp:
            broken = os.path.join(tmp, "broken.png")
            with open(broken, "wb") as f:
                f.write(b"this is not an image\n" + os.urandom(2048))
            upload(driver, By, broken, args.timeout)
            message = wait_for(lambda: js_visible(driver, "error") and js_text(driver, "error"),
                               args.timeout, "#error to show a message for a broken file")
        if js_text(driver, "label") in ("NORMAL", "PNEUMONIA") and js_visible(driver, "label"):
            raise Failure("a label is shown for the broken file")
        print(f"broken file: #error {message!r}")

        severe = severe_logs(driver, ignore_http_errors=True)
        if severe:
            raise Failure("browser console errors after the broken file:\n  " + "\n  ".join(severe))
    finally:
        driver.quit()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--image", required=True, help="a PNG or JPEG chest X-ray to upload")
    parser.add_argument("--screenshot", help="where to save a PNG screenshot of the result")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a prediction")
    args = parser.parse_args()

    webdriver = import_selenium()
    if webdriver is None:
        print("SKIP: python3-selenium is not installed (Debian: apt-get install python3-selenium)")
        return SKIP
    try:
        status = run(args, webdriver)
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    except Exception as e:  # a driver that cannot start, a vanished element, ...
        print(f"FAIL: {type(e).__name__}: {e}")
        return 1
    if status == 0:
        print("PASS")
    return status


if __name__ == "__main__":
    sys.exit(main())
