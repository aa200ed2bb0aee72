# The example services in a slim, non-root image, served over h2c on port 9080.
# Register it with a Restate server: POST {admin}/deployments {"uri": "http://<host>:9080"}
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY framework ./framework
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY services ./services
USER app
EXPOSE 9080
CMD ["python", "-m", "framework", "serve", "services.app:app", "--bind", "0.0.0.0:9080"]
