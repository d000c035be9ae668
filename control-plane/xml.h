/*
 * xml: reads the text of one element of a small XML document, enough for
 * the answers of AWS query APIs (STS): elements, attributes, the XML
 * declaration, comments, the five named entities and character references.
 * No DTD, no CDATA: a document using them is not read.
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
