# Docker front door for a CUDA host (needs the NVIDIA driver and container toolkit on the host).
# Same pins as requirements.txt, with the GPU builds: torch==2.13.0 from PyPI is the CUDA build on Linux, and
# tensorflow replaces tensorflow-cpu. Docker cannot be built on the kit's CI machines; tests/test_environment.py
# checks that this file keeps installing from requirements.txt.
FROM python:3.11-slim

WORKDIR /home/aicrowd
COPY requirements.txt requirements-nodeps.txt ./
RUN sed 's/^tensorflow-cpu==/tensorflow==/' requirements.txt > requirements-cuda.txt \
 && pip install --no-cache-dir -r requirements-cuda.txt \
 && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt

COPY . .
# The image's Python already has the stack: run.sh must not build a virtualenv inside it.
ENV KIT_NO_VENV=1
# The grader sets AICROWD_IS_GRADING, so run.sh uses this image's Python as given.
ENTRYPOINT ["./run.sh"]
