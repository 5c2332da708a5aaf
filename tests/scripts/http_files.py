"""A tiny HTTP server for the download tests: serves files from memory, with Range."""
import http.server
import threading


class FileServer:
    """Serves {path: bytes} over HTTP with Range support; records each request's Range."""

    def __init__(self, files):
        self.files = files
        self.ranges = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = server.files.get(self.path)
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(requested[len("bytes="):].split("-")[0]) if requested else 0
                if start >= len(data) and requested:
                    self.send_error(416, "Range Not Satisfiable")
                    return
                self.send_response(206 if requested else 200)
                if requested:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
