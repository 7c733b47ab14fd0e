"""The official OFREP providers as clients of a real agent: Python (through the OpenFeature SDK),
JavaScript (``@openfeature/ofrep-provider`` with ``@openfeature/server-sdk`` under node, over TCP
and, with a custom fetch, over the Unix socket) and ``curl --unix-socket``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from tests.helpers import write_json

from .flags import flags

NPM_CACHE = Path(os.environ.get("FLAGSOCK_NPM_CACHE", Path.home() / ".cache" / "flagsock-npm"))
NPM_PACKAGES = ("@openfeature/ofrep-provider", "@openfeature/server-sdk")


@pytest.fixture
async def agent(http_agent, tmp_path):
    return await http_agent([write_json(tmp_path / "flags.json", flags())])


# -- Python ---------------------------------------------------------------------------------------

def _python_provider_answers(base_url: str) -> dict:
    from openfeature import api
    from openfeature.contrib.provider.ofrep import OFREPProvider
    from openfeature.evaluation_context import EvaluationContext

    domain = f"flagsock-http-{os.getpid()}"
    provider = OFREPProvider(base_url, timeout=5)
    api.set_provider(provider, domain)
    try:
        client = api.get_client(domain)
        user = EvaluationContext("user-1", {"email": "someone@example.com"})
        return {
            "bool": client.get_boolean_details("bool-flag", False, user),
            "string": client.get_string_details("string-flag", "none", user),
            "int": client.get_integer_details("int-flag", 0, user),
            "float": client.get_float_details("float-flag", 0.0, user),
            "object": client.get_object_details("object-flag", {}, user),
            "missing": client.get_boolean_details("no-such-flag", True, user),
            "missing_string": client.get_string_details("no-such-flag", "fallback", user),
            "disabled": client.get_boolean_details("disabled-flag", False, user),
        }
    finally:
        provider.session.close()


async def test_python_ofrep_provider_through_the_openfeature_sdk(agent):
    answers = await trio.to_thread.run_sync(_python_provider_answers, agent.url)
    assert (answers["bool"].value, answers["bool"].variant, answers["bool"].reason) == (True, "on", "STATIC")
    assert answers["bool"].error_code is None
    assert (answers["string"].value, answers["string"].reason) == ("blue", "TARGETING_MATCH")
    assert (answers["int"].value, answers["int"].variant) == (2, "two")
    assert answers["float"].value == 3.14
    assert answers["object"].value == {"x": 1, "y": [1, 2]}
    assert answers["bool"].flag_metadata == {"owner": "tests"}
    missing = answers["missing"]
    assert missing.value is True and missing.error_code.value == "FLAG_NOT_FOUND"
    assert answers["missing_string"].value == "fallback"
    assert (answers["disabled"].value, answers["disabled"].reason) == (False, "DISABLED")


# -- JavaScript ------------------------------------------------------------------------------------

JS_CLIENT = r"""
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');
const http = require('node:http');

// Over a Unix socket: the provider takes any fetch; this one dials the socket with node:http.
function unixFetch(socketPath) {
  return async (request) => {
    const body = request.body ? Buffer.from(await request.arrayBuffer()) : undefined;
    const url = new URL(request.url);
    return await new Promise((resolve, reject) => {
      const req = http.request({ socketPath, path: url.pathname + url.search, method: request.method,
                                 headers: Object.fromEntries(request.headers) }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve(new Response(Buffer.concat(chunks),
          { status: res.statusCode, headers: res.headers })));
      });
      req.on('error', reject);
      if (body) req.write(body);
      req.end();
    });
  };
}

async function main() {
  const [baseUrl, socketPath] = process.argv.slice(2);
  const options = socketPath ? { baseUrl, fetchImplementation: unixFetch(socketPath) } : { baseUrl };
  await OpenFeature.setProviderAndWait(new OFREPProvider(options));
  const client = OpenFeature.getClient();
  const user = { targetingKey: 'user-1', email: 'someone@example.com' };
  const out = {
    bool: await client.getBooleanDetails('bool-flag', false, user),
    string: await client.getStringDetails('string-flag', 'none', user),
    int: await client.getNumberDetails('int-flag', 0, user),
    float: await client.getNumberDetails('float-flag', 0, user),
    object: await client.getObjectDetails('object-flag', {}, user),
    missing: await client.getBooleanDetails('no-such-flag', true, user),
    missingNumber: await client.getNumberDetails('no-such-flag', 42, user),
  };
  await OpenFeature.close();
  process.stdout.write(JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="session")
def node_modules() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the JavaScript provider test: apt-get install nodejs npm")
    modules = NPM_CACHE / "node_modules"
    if not all((modules / name / "package.json").exists() for name in NPM_PACKAGES):
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        if not (NPM_CACHE / "package.json").exists():
            (NPM_CACHE / "package.json").write_text('{"name": "flagsock-npm-cache", "private": true}\n')
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", *NPM_PACKAGES],
                              cwd=NPM_CACHE, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm could not install {' '.join(NPM_PACKAGES)} into {NPM_CACHE}: {done.stderr[-500:]}")
    return modules


async def _run_node(node_modules: Path, tmp_path: Path, *args: str) -> dict:
    script = tmp_path / "client.cjs"
    script.write_text(JS_CLIENT)
    env = {**os.environ, "NODE_PATH": str(node_modules)}
    with trio.fail_after(60):
        done = await trio.run_process(["node", str(script), *args], capture_stdout=True, capture_stderr=True,
                                      env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def _check_js_answers(out: dict) -> None:
    assert (out["bool"]["value"], out["bool"]["variant"], out["bool"]["reason"]) == (True, "on", "STATIC")
    assert (out["string"]["value"], out["string"]["reason"]) == ("blue", "TARGETING_MATCH")
    assert out["int"]["value"] == 2 and out["float"]["value"] == 3.14
    assert out["object"]["value"] == {"x": 1, "y": [1, 2]}
    assert out["bool"]["flagMetadata"] == {"owner": "tests"}
    assert out["missing"]["value"] is True and out["missing"]["errorCode"] == "FLAG_NOT_FOUND"
    assert out["missingNumber"]["value"] == 42 and out["missingNumber"]["errorCode"] == "FLAG_NOT_FOUND"


async def test_javascript_ofrep_provider_over_tcp(agent, node_modules, tmp_path):
    _check_js_answers(await _run_node(node_modules, tmp_path, agent.url))


async def test_javascript_ofrep_provider_over_the_unix_socket(agent, node_modules, tmp_path):
    _check_js_answers(await _run_node(node_modules, tmp_path, "http://localhost", agent.unix_path))


# -- curl ------------------------------------------------------------------------------------------

async def test_curl_over_the_unix_socket(agent):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is needed for this test: apt-get install curl")
    with trio.fail_after(30):
        done = await trio.run_process(
            [curl, "--silent", "--show-error", "--unix-socket", agent.unix_path,
             "-H", "Content-Type: application/json", "-d", '{"context": {"targetingKey": "user-1"}}',
             "http://localhost/ofrep/v1/evaluate/flags/int-flag"],
            capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == {"key": "int-flag", "value": 2, "reason": "STATIC", "variant": "two",
                                       "metadata": {"owner": "tests"}}
