{
  "targets": [
    {
      "target_name": "tsgi_native",
      "sources": ["native/tsgi_native.c"]
    }
  ]
}
