# Prometheus from Debian's package, for deploy/compose.yaml where no public registry is reachable:
# deploy/docker/build.sh prometheus (FROM the local base with prometheus, local-base.sh).
ARG BASE_IMAGE=botfleet-local/prometheus:bookworm
FROM ${BASE_IMAGE}
RUN install -d -o prometheus -g prometheus /prometheus
COPY prometheus-entrypoint.sh /usr/local/bin/prometheus-entrypoint.sh
ENV PROMETHEUS_CONFIG_DIR=/etc/botfleet-prometheus PROMETHEUS_LISTEN=127.0.0.1:9090 \
    BOTFLEET_TARGETS=127.0.0.1:3001
USER prometheus
VOLUME /prometheus
# Healthy once /-/healthy answers 200 (no curl or wget in the image: bash's /dev/tcp).
HEALTHCHECK --interval=5s --timeout=3s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/${PROMETHEUS_LISTEN%:*}/${PROMETHEUS_LISTEN##*:} && printf 'GET /-/healthy HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["sh", "/usr/local/bin/prometheus-entrypoint.sh"]
