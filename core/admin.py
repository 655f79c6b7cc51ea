from django.contrib import admin

from .models import Address, AppUser, CustomerRelationship

admin.site.register(Address)
admin.site.register(AppUser)
admin.site.register(CustomerRelationship)
