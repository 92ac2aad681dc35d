/** The control plane's own CA and the certificates it signs. */
export {
  CA_CERT_FILE,
  CA_KEY_FILE,
  CA_VALIDITY_DAYS,
  PkiError,
  certificateFingerprint,
  ensureCa,
  formatFingerprint,
  normalizeFingerprint,
} from "./ca.js";
export type { CertificateAuthority } from "./ca.js";
export {
  HTTP_CERT_FILE,
  HTTP_KEY_FILE,
  LEAF_VALIDITY_DAYS,
  RENEW_BEFORE_DAYS,
  ensureServerCert,
  issueCertificate,
  sanFor,
} from "./server-cert.js";
export type { IssueCertificateOptions, IssuedCertificate, ServerCertificate } from "./server-cert.js";
export { PKI_DIR } from "./files.js";
export { MAX_CSR_LENGTH, csrPublicKey, issueClientCertificate, verifyClientCertificate } from "./client-cert.js";
export type { ClientCertificate, PeerIdentity } from "./client-cert.js";
