# Static, CGO-free build (modernc.org/sqlite is pure Go).
FROM golang:1.26.10 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/tapd-mirror ./cmd/tapd-mirror

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tapd-mirror /tapd-mirror
# Listen on all interfaces inside the container: an API token of at least 32
# characters (TAPD_MIRROR_ADMIN_TOKEN, …) is then required; see README "Security".
ENV TAPD_MIRROR_LISTEN=0.0.0.0:50809
EXPOSE 50809
ENTRYPOINT ["/tapd-mirror"]
CMD ["serve", "--log-format", "json"]
