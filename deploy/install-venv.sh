#!/bin/sh
# The Dockerfile's build stages run this: install digitnet with the extras given ("otel", "otel,viz",
# "otel,viz,train") and the pinned versions into /opt/venv. pip runs from /opt/pip, so the venv the images get
# holds no installer; the packages' own test suites (and onnx's backend test data), which nothing here imports,
# are left out.
set -eu
# Behind a TLS-intercepting proxy pip needs the proxy's CA: the pip-ca build secret, never written to a layer.
if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi
/opt/pip/bin/pip --python /opt/venv/bin/python install --no-cache-dir --disable-pip-version-check -c constraints.txt ".${1:+[$1]}"
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
find "$site" -type d -name tests -prune -exec rm -rf {} +
rm -rf "$site/onnx/backend/test/data"
