"""The page `tess serve` serves at GET /, driven in headless Chromium.

    python3 page_check.py --tess BIN --model DIR --out DIR

Starts the server, opens its page, generates with a fixed seed while the
denoising steps stream in, then checks that the page saw the steps (the
counter, at least two different renderings, the replay slider) and that its
final answer is exactly what the same request returns from the API without
streaming. Leaves a screenshot at OUT/serve_page.png.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_fixture import Server, check, check_args  # noqa: E402

PROMPT = "the cat sat on"
STEPS = 8
MAX_TOKENS = 12
SEED = 3
TIMEOUT = 60

# Reads the step view's text and every span's confidence in one round trip.
READ_VIEW = """
const v = document.getElementById('steps_view');
return [v.textContent, Array.from(v.querySelectorAll('span.tok')).map(s => s.title)];
"""

SET_REPLAY = """
const r = document.getElementById('replay');
r.value = String(arguments[0]);
r.dispatchEvent(new Event('input', {bubbles: true}));
const v = document.getElementById('steps_view');
return [v.textContent, v.querySelectorAll('span.tok').length];
"""


def api_answer(url, model_id):
    body = {
        "model": model_id,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "steps": STEPS,
        "seed": SEED,
        "stream": False,
    }
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as e:
        check(False, "POST /v1/chat/completions: HTTP %d %s" % (e.code, e.read().decode(errors="replace")))


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def set_field(driver, element_id, value):
    el = driver.find_element("id", element_id)
    el.clear()
    el.send_keys(str(value))


def main():
    args = check_args(__doc__)
    shot = os.path.join(args.out, "serve_page.png")

    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.time()
    with Server(args.tess, args.model) as server:
        driver = browser()
        try:
            driver.set_page_load_timeout(TIMEOUT)
            driver.set_script_timeout(TIMEOUT)
            driver.get(server.url + "/")
            check("live denoising" in driver.title, "page title %r lacks 'live denoising'" % driver.title)
            for element_id in ("prompt", "steps", "max_tokens", "guidance", "seed", "adaptive", "api_key",
                               "generate", "steps_view", "status", "step_count", "answer", "replay", "error"):
                check(driver.find_elements("id", element_id), "the page has no #%s" % element_id)

            set_field(driver, "prompt", PROMPT)
            set_field(driver, "steps", STEPS)
            set_field(driver, "max_tokens", MAX_TOKENS)
            set_field(driver, "seed", SEED)
            driver.find_element("id", "generate").click()

            # Watch the step view while the answer is being denoised.
            renderings = set()
            polls = 0

            def answered(d):
                nonlocal polls
                polls += 1
                text, titles = d.execute_script(READ_VIEW)
                if titles:
                    renderings.add(text)
                error = d.find_element("id", "error").text.strip()
                if error:
                    return "error"
                return d.find_elements("css selector", '#answer[data-done="1"]') and "done"

            try:
                outcome = WebDriverWait(driver, TIMEOUT, poll_frequency=0.02).until(answered)
            except TimeoutException:
                driver.save_screenshot(shot)
                check(False, "no #answer[data-done=1] within %ds (status %r, error %r)" % (
                    TIMEOUT, driver.find_element("id", "status").text, driver.find_element("id", "error").text))
            if outcome == "error":
                driver.save_screenshot(shot)
                check(False, "the page shows an error: %s" % driver.find_element("id", "error").text)

            answer = driver.find_element("id", "answer")
            page_text = answer.get_attribute("textContent")
            finish = answer.get_attribute("data-finish")
            check(finish in ("stop", "length"), "#answer data-finish is %r (expected stop or length)" % finish)

            # The replay slider is enabled once the stream has ended.
            WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_element("id", "replay").is_enabled())
            count_text = driver.find_element("id", "step_count").text.strip()
            check(count_text.isdigit(), "#step_count holds %r, not an integer" % count_text)
            count = int(count_text)
            check(2 <= count <= STEPS, "#step_count is %d (expected 2..%d)" % (count, STEPS))
            replay = driver.find_element("id", "replay")
            check(replay.get_attribute("min") == "1" and replay.get_attribute("max") == str(count),
                  "#replay spans %s..%s, expected 1..%d" % (replay.get_attribute("min"),
                                                            replay.get_attribute("max"), count))
            status = driver.find_element("id", "status").text
            check(status.startswith("step %d / %d" % (count, STEPS)),
                  "#status reads %r, expected 'step %d / %d'" % (status, count, STEPS))

            # Every step again, through the slider.
            drawn = [driver.execute_script(SET_REPLAY, k) for k in range(1, count + 1)]
            check(all(spans > 0 for _, spans in drawn), "the replay slider drew a step without token spans")
            replayed = [text for text, _ in drawn]
            distinct = set(replayed) | renderings
            check(len(distinct) >= 2, "the step view never changed across %d steps: %r" % (count, replayed[0]))
            titles = driver.execute_script(READ_VIEW)[1]
            check(titles and all("confidence" in t for t in titles), "step spans lack a confidence title")
            driver.save_screenshot(shot)
        finally:
            driver.quit()

        api = api_answer(server.url, server.model_id)
        want = api["choices"][0]["message"]["content"]
        check(page_text == want, "the page's answer %r differs from the API's %r" % (page_text, want))
        check(count == api["choices"][0]["steps"], "the page counted %d steps, the API reports %r" % (
            count, api["choices"][0]["steps"]))
        check(finish == api["choices"][0]["finish_reason"], "the page's finish_reason %r, the API's %r" % (
            finish, api["choices"][0]["finish_reason"]))

    check(os.path.getsize(shot) > 0, "no screenshot at %s" % shot)
    print("page ok: %d steps streamed (%d distinct renderings, %d seen live over %d polls), finish %s, "
          "answer %r matches the API, status %r, %.1fs; screenshot %s" % (
              count, len(distinct), len(renderings), polls, finish, page_text, status, time.time() - start, shot),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
