# Dataflow Flex Template image for `vccflow stream` (see docs/streaming.md, "Launch on Dataflow").
# One image for the launcher and the workers: the project and its pinned dependencies are
# installed here once; launch with --parameters sdk_container_image=<this image>.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:latest AS launcher

FROM apache/beam_python3.11_sdk:2.77.0

COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

ARG WORKDIR=/template
WORKDIR ${WORKDIR}
COPY setup.py README.md ./
COPY pipelines pipelines
COPY transforms transforms
COPY schemas schemas
RUN pip install --no-cache-dir . && python -c "import pipelines.stream, transforms.streaming"

# The launcher runs this file with the template parameters as --name=value arguments; it
# builds the streaming graph and submits it (DataflowRunner), then exits.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/pipelines/stream.py"
ENV FLEX_TEMPLATE_PYTHON_SETUP_FILE="${WORKDIR}/setup.py"
# Everything is installed already: staging the setup file must not reinstall dependencies.
ENV PIP_NO_DEPS=True

ENTRYPOINT ["/opt/apache/beam/boot"]
