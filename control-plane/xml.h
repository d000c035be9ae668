/*
 * xml: reads the text of one element of a small XML document, enough for
 * the answers of AWS query APIs (STS), with expat.  A document with a DTD
 * is not read (no entity declarations, so no entity expansion).
 */

#ifndef CP_XML_H
#define CP_XML_H

/*
 * The decoded text of the first element at path ("A/B/C", local names:
 * namespace prefixes are ignored), malloc'd (caller frees), "" for an
 * empty element; NULL when there is none, when it holds child elements, or
 * when the document is malformed before it.
 */
char *xml_text(const char *doc, const char *path);

#endif
