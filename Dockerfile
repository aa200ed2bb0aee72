# The example services (services/) in a slim, non-root image, served over h2c on port 9080.
#   docker build -t framework-services .
#   docker run --rm -p 9080:9080 framework-services
# Register it with a Restate server: POST {admin}/deployments {"uri": "http://<host>:9080"}
# (compose.yaml runs both and registers it). tests/test_container.py replays these steps.

# Build stage: the project and its dependencies installed into a virtual environment.
FROM python:3.11-slim AS build
ENV VIRTUAL_ENV=/opt/venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY framework ./framework
RUN python -m venv "$VIRTUAL_ENV" && "$VIRTUAL_ENV/bin/pip" install .

# Final stage: the same Python, the venv (at the same path: a venv is not relocatable) and
# the services; no compiler, no pip cache, no source of the framework besides the install.
FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
ENV VIRTUAL_ENV=/opt/venv
ENV PATH=/opt/venv/bin:$PATH
ENV PYTHONUNBUFFERED=1
ENV PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY services ./services
# Numeric, so that Kubernetes (runAsNonRoot) can tell it is not root.
USER 10001:10001
EXPOSE 9080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9080/health', timeout=4)"]
# SIGTERM (docker stop) ends it gracefully: open invocations get 3 s (--graceful-timeout).
CMD ["python", "-m", "framework", "serve", "services.app:app", "--bind", "0.0.0.0:9080"]
