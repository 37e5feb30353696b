# One image for the collector and the dashboard; the command picks which.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sdk sdk
COPY collector collector
COPY dashboard dashboard
RUN pip install --no-cache-dir '.[server]'
EXPOSE 4317 4318 8050 8888
ENTRYPOINT ["infersight"]
CMD ["serve", "--data-dir", "/data"]
