/** Injection tokens for values that are not classes. */
export const CONFIG = Symbol('FaceSearchConfig');
export const PORTS = Symbol('Ports');
