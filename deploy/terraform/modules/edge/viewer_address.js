// CloudFront Function (viewer request): tells the api who the viewer is.
// X-Qf-Viewer-Address is set to the address CloudFront saw, REPLACING whatever the client
// sent under that name, so the api can trust it (QF_CLIENT_IP_HEADER): only CloudFront can
// reach the origin (the ALB requires the secret origin header). IPv6 goes in brackets.
function handler(event) {
  var ip = event.viewer.ip;
  event.request.headers["x-qf-viewer-address"] = {
    value: ip.indexOf(":") >= 0 ? "[" + ip + "]" : ip,
  };
  return event.request;
}
