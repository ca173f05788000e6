/**
 * What Bun.serve hands to the app, made whole. An HTTP/1.0 request without a Host header reaches the
 * handler with a relative URL (`/v1/events`), which Hono's path parser cuts wrongly (`/events`):
 * such a request gets an absolute URL on the loopback name, its path kept exactly.
 */
export function edgeFetch(fetch: (req: Request) => Response | Promise<Response>): (req: Request) => Response | Promise<Response> {
  return function edge(req) {
    // Read once: each read of req.url builds a new string.
    const url = req.url;
    if (url.startsWith('http://') || url.startsWith('https://')) return fetch(req);
    return fetch(new Request(`http://localhost${url.startsWith('/') ? '' : '/'}${url}`, req));
  };
}
