/**
 * The label character set shared by the agent (`--labels`), join tokens and the control plane:
 * keys of letters, digits and `. _ / : -` (starting and ending with a letter or digit, at most
 * 128), values of letters, digits and `. _ : / @ + -` (at most 253).
 */

/** A valid label key. */
export const LABEL_KEY_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9._/:-]{0,126}[A-Za-z0-9])?$/;
/** A valid label value (may be empty). */
export const LABEL_VALUE_PATTERN = /^[A-Za-z0-9._:/@+-]{0,253}$/;
