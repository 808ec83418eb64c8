# The cloud half: `neucodex serve` on a co-inference checkpoint (default: the shipped CIFAR-10 rb2).
#   docker build -t neucodex .
#   docker run -p 50051:50051 -p 9100:9100 neucodex
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[full]'
EXPOSE 50051 9100
ENTRYPOINT ["neucodex", "serve", "--host", "0.0.0.0", "--port", "50051", "--metrics-host", "0.0.0.0", \
            "--metrics-port", "9100", "--drain-delay", "5"]
CMD ["--checkpoint", "zoo:cifar10-resnet18-rb2"]
